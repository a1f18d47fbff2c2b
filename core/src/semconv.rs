//! Attribute, event and value names: every key this filter writes, in one place.
//!
//! OpenTelemetry semantic-convention names come from the `opentelemetry-semantic-conventions`
//! crate (the same project's generated constants), so a rename upstream shows up here as a
//! deprecation. Only what the crate does not have is spelled out: the legacy names the seed
//! design queries (`http.method`, `http.url`, `http.status_code`, `span.kind`; deprecated in
//! semconv, kept on purpose), the seed's Durable Object keys, and this project's `envoy.*` keys.
//!
//! Deprecations checked against the crate (v0.33): `peer.service` is replaced by
//! `service.peer.name`, which is what CLIENT spans carry.

pub use opentelemetry_semantic_conventions::attribute::{
    CLIENT_ADDRESS, ERROR_TYPE, EXCEPTION_MESSAGE, EXCEPTION_TYPE, HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE, NETWORK_PEER_ADDRESS,
    NETWORK_PEER_PORT, NETWORK_PROTOCOL_VERSION, SERVER_ADDRESS, SERVER_PORT, SERVICE_NAME,
    SERVICE_PEER_NAME, TELEMETRY_SDK_LANGUAGE, TELEMETRY_SDK_NAME, TELEMETRY_SDK_VERSION, URL_FULL,
    URL_PATH, URL_SCHEME, URL_TEMPLATE, USER_AGENT_ORIGINAL,
};

// --- Legacy names kept because the seed design (and its Honeycomb boards) query them ------
pub const LEGACY_HTTP_METHOD: &str = "http.method";
pub const LEGACY_HTTP_URL: &str = "http.url";
pub const LEGACY_HTTP_STATUS_CODE: &str = "http.status_code";
pub const SPAN_KIND: &str = "span.kind";

// --- Durable Object targets (seed) ----------------------------------------------------------
pub const DURABLE_OBJECT_NAME: &str = "durable_object.name";
pub const DURABLE_OBJECT_ID: &str = "durable_object.id";
/// `true` on a Durable Object call whose id (route param or header) was missing.
pub const DURABLE_OBJECT_ID_MISSING: &str = "durable_object.id_missing";

// --- Header attributes (semconv: `http.request.header.<lower-case name>`, string arrays) ----
pub const HTTP_REQUEST_HEADER_PREFIX: &str = "http.request.header.";
pub const HTTP_RESPONSE_HEADER_PREFIX: &str = "http.response.header.";

// --- Envoy specifics (this project) ---------------------------------------------------------
pub const ENVOY_CLUSTER: &str = "envoy.cluster.name";
pub const ENVOY_RESPONSE_FLAGS: &str = "envoy.response_flags";
pub const ENVOY_RESPONSE_CODE_DETAILS: &str = "envoy.response_code_details";

// --- Events -----------------------------------------------------------------------------------
pub const EVENT_CALL_START: &str = "call.start";
pub const EVENT_CALL_COMPLETE: &str = "call.complete";
/// The semconv exception event name.
pub const EVENT_EXCEPTION: &str = "exception";

// --- Values -----------------------------------------------------------------------------------
pub const SPAN_KIND_SERVER: &str = "server";
pub const SPAN_KIND_CLIENT: &str = "client";
/// `error.type` / `http.request.method` value for anything outside the known set (semconv).
pub const OTHER: &str = "_OTHER";

// --- Per-attempt CLIENT spans (upstream-filter placement) ----------------------------------
pub use opentelemetry_semantic_conventions::attribute::{
    HTTP_REQUEST_RESEND_COUNT, NETWORK_PROTOCOL_NAME,
};
/// `network.protocol.name` of every span this filter writes.
pub const NETWORK_PROTOCOL_HTTP: &str = "http";

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate's names are the ones this filter has always written (a rename upstream would
    /// change exported attributes silently; this makes it loud).
    #[test]
    fn crate_names_are_the_expected_strings() {
        #[rustfmt::skip]
        let rows = [
            (HTTP_REQUEST_METHOD, "http.request.method"),
            (HTTP_RESPONSE_STATUS_CODE, "http.response.status_code"),
            (HTTP_ROUTE, "http.route"),
            (URL_FULL, "url.full"),
            (URL_TEMPLATE, "url.template"),
            (SERVER_ADDRESS, "server.address"),
            (CLIENT_ADDRESS, "client.address"),
            (SERVICE_PEER_NAME, "service.peer.name"),
            (USER_AGENT_ORIGINAL, "user_agent.original"),
            (ERROR_TYPE, "error.type"),
        ];
        for (got, want) in rows {
            assert_eq!(got, want);
        }
    }
}

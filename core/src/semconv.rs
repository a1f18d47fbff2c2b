//! Attribute, event and value names: every key this filter writes, in one place.
//!
//! Stable OpenTelemetry HTTP semantic conventions (v1.26+), the legacy names the seed design
//! used (`http.method`, `http.url`, `http.status_code`), and this project's own keys.

// --- Resource -----------------------------------------------------------------------------
pub const SERVICE_NAME: &str = "service.name";
pub const TELEMETRY_SDK_NAME: &str = "telemetry.sdk.name";
pub const TELEMETRY_SDK_LANGUAGE: &str = "telemetry.sdk.language";
pub const TELEMETRY_SDK_VERSION: &str = "telemetry.sdk.version";

// --- Stable HTTP semconv ------------------------------------------------------------------
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
pub const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
pub const HTTP_ROUTE: &str = "http.route";
pub const URL_PATH: &str = "url.path";
pub const URL_FULL: &str = "url.full";
pub const URL_SCHEME: &str = "url.scheme";
pub const URL_TEMPLATE: &str = "url.template";
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
pub const CLIENT_ADDRESS: &str = "client.address";
pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
pub const NETWORK_PEER_PORT: &str = "network.peer.port";
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";
pub const ERROR_TYPE: &str = "error.type";
pub const PEER_SERVICE: &str = "peer.service";

// --- Legacy names kept because the seed design (and its Honeycomb boards) query them ------
pub const LEGACY_HTTP_METHOD: &str = "http.method";
pub const LEGACY_HTTP_URL: &str = "http.url";
pub const LEGACY_HTTP_STATUS_CODE: &str = "http.status_code";
pub const SPAN_KIND: &str = "span.kind";

// --- Durable Object targets (seed) ----------------------------------------------------------
pub const DURABLE_OBJECT_NAME: &str = "durable_object.name";
pub const DURABLE_OBJECT_ID: &str = "durable_object.id";

// --- Envoy specifics (this project) ---------------------------------------------------------
pub const ENVOY_CLUSTER: &str = "envoy.cluster.name";
pub const ENVOY_RESPONSE_FLAGS: &str = "envoy.response_flags";
pub const ENVOY_RESPONSE_CODE_DETAILS: &str = "envoy.response_code_details";

// --- Events -----------------------------------------------------------------------------------
pub const EVENT_CALL_START: &str = "call.start";
pub const EVENT_CALL_COMPLETE: &str = "call.complete";
pub const EVENT_EXCEPTION: &str = "exception";
pub const EXCEPTION_TYPE: &str = "exception.type";
pub const EXCEPTION_MESSAGE: &str = "exception.message";

// --- Values -----------------------------------------------------------------------------------
pub const SPAN_KIND_SERVER: &str = "server";
pub const SPAN_KIND_CLIENT: &str = "client";
/// `error.type` / `http.request.method` value for anything outside the known set (semconv).
pub const OTHER: &str = "_OTHER";

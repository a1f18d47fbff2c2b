//! How a finished request maps to span status and `error.type`: HTTP status classes (OTel HTTP
//! semconv), and Envoy's response flags for calls that got no upstream response.

/// Envoy's response flags (`response.flags`, the legacy bit vector of
/// `StreamInfo::CoreResponseFlag`), each bit named once here. Short names as in the access
/// log's `%RESPONSE_FLAGS%`.
pub mod flag {
    pub const FAILED_LOCAL_HEALTH_CHECK: u64 = 1 << 0; // LH
    pub const NO_HEALTHY_UPSTREAM: u64 = 1 << 1; // UH
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 1 << 2; // UT
    pub const LOCAL_RESET: u64 = 1 << 3; // LR
    pub const UPSTREAM_REMOTE_RESET: u64 = 1 << 4; // UR
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 1 << 5; // UF
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 1 << 6; // UC
    pub const UPSTREAM_OVERFLOW: u64 = 1 << 7; // UO
    pub const NO_ROUTE_FOUND: u64 = 1 << 8; // NR
    pub const DELAY_INJECTED: u64 = 1 << 9; // DI
    pub const FAULT_INJECTED: u64 = 1 << 10; // FI
    pub const RATE_LIMITED: u64 = 1 << 11; // RL
    pub const UNAUTHORIZED_EXTERNAL_SERVICE: u64 = 1 << 12; // UAEX
    pub const RATE_LIMIT_SERVICE_ERROR: u64 = 1 << 13; // RLSE
    pub const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 1 << 14; // DC
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: u64 = 1 << 15; // URX
    pub const STREAM_IDLE_TIMEOUT: u64 = 1 << 16; // SI
    pub const INVALID_ENVOY_REQUEST_HEADERS: u64 = 1 << 17; // IH
    pub const DOWNSTREAM_PROTOCOL_ERROR: u64 = 1 << 18; // DPE
    pub const UPSTREAM_MAX_STREAM_DURATION_REACHED: u64 = 1 << 19; // UMSDR
    pub const RESPONSE_FROM_CACHE_FILTER: u64 = 1 << 20; // RFCF
    pub const NO_FILTER_CONFIG_FOUND: u64 = 1 << 21; // NFCF
    pub const DURATION_TIMEOUT: u64 = 1 << 22; // DT
    pub const UPSTREAM_PROTOCOL_ERROR: u64 = 1 << 23; // UPE
    pub const NO_CLUSTER_FOUND: u64 = 1 << 24; // NC
    pub const OVERLOAD_MANAGER: u64 = 1 << 25; // OM
    pub const DNS_RESOLUTION_FAILED: u64 = 1 << 26; // DF
    pub const DROP_OVERLOAD: u64 = 1 << 27; // DO
    pub const DOWNSTREAM_REMOTE_RESET: u64 = 1 << 28; // DR
}

/// Every flag with its short name, in bit order (how `%RESPONSE_FLAGS%` lists them).
pub const RESPONSE_FLAGS: [(u64, &str); 29] = [
    (flag::FAILED_LOCAL_HEALTH_CHECK, "LH"),
    (flag::NO_HEALTHY_UPSTREAM, "UH"),
    (flag::UPSTREAM_REQUEST_TIMEOUT, "UT"),
    (flag::LOCAL_RESET, "LR"),
    (flag::UPSTREAM_REMOTE_RESET, "UR"),
    (flag::UPSTREAM_CONNECTION_FAILURE, "UF"),
    (flag::UPSTREAM_CONNECTION_TERMINATION, "UC"),
    (flag::UPSTREAM_OVERFLOW, "UO"),
    (flag::NO_ROUTE_FOUND, "NR"),
    (flag::DELAY_INJECTED, "DI"),
    (flag::FAULT_INJECTED, "FI"),
    (flag::RATE_LIMITED, "RL"),
    (flag::UNAUTHORIZED_EXTERNAL_SERVICE, "UAEX"),
    (flag::RATE_LIMIT_SERVICE_ERROR, "RLSE"),
    (flag::DOWNSTREAM_CONNECTION_TERMINATION, "DC"),
    (flag::UPSTREAM_RETRY_LIMIT_EXCEEDED, "URX"),
    (flag::STREAM_IDLE_TIMEOUT, "SI"),
    (flag::INVALID_ENVOY_REQUEST_HEADERS, "IH"),
    (flag::DOWNSTREAM_PROTOCOL_ERROR, "DPE"),
    (flag::UPSTREAM_MAX_STREAM_DURATION_REACHED, "UMSDR"),
    (flag::RESPONSE_FROM_CACHE_FILTER, "RFCF"),
    (flag::NO_FILTER_CONFIG_FOUND, "NFCF"),
    (flag::DURATION_TIMEOUT, "DT"),
    (flag::UPSTREAM_PROTOCOL_ERROR, "UPE"),
    (flag::NO_CLUSTER_FOUND, "NC"),
    (flag::OVERLOAD_MANAGER, "OM"),
    (flag::DNS_RESOLUTION_FAILED, "DF"),
    (flag::DROP_OVERLOAD, "DO"),
    (flag::DOWNSTREAM_REMOTE_RESET, "DR"),
];

/// The upstream failures with their `error.type`, most specific first: a retry-limit failure
/// also carries the last attempt's cause, which wins. Together they are the flags meaning
/// "the upstream call was attempted and failed without a usable response".
const UPSTREAM_FAILURES: [(u64, &str); 9] = [
    (flag::UPSTREAM_REQUEST_TIMEOUT, "timeout"),
    (flag::UPSTREAM_CONNECTION_FAILURE, "connection_failure"),
    (
        flag::UPSTREAM_CONNECTION_TERMINATION,
        "connection_termination",
    ),
    (flag::UPSTREAM_REMOTE_RESET, "upstream_reset"),
    (flag::UPSTREAM_OVERFLOW, "upstream_overflow"),
    (flag::NO_HEALTHY_UPSTREAM, "no_healthy_upstream"),
    (
        flag::UPSTREAM_MAX_STREAM_DURATION_REACHED,
        "max_stream_duration_reached",
    ),
    (flag::UPSTREAM_PROTOCOL_ERROR, "upstream_protocol_error"),
    (flag::UPSTREAM_RETRY_LIMIT_EXCEEDED, "retry_limit_exceeded"),
];

/// `UF,URX` style rendering; empty when no flag is set.
pub fn flags_to_string(flags: u64) -> String {
    let mut out = String::new();
    for (bit, name) in RESPONSE_FLAGS {
        if flags & bit != 0 {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(name);
        }
    }
    out
}

/// True when the client gave up: it reset its stream (`DR`) or closed its connection (`DC`).
pub fn client_gave_up(flags: u64) -> bool {
    flags & (flag::DOWNSTREAM_REMOTE_RESET | flag::DOWNSTREAM_CONNECTION_TERMINATION) != 0
}

/// True when the flags say an upstream call was attempted and failed.
pub fn upstream_failed(flags: u64) -> bool {
    UPSTREAM_FAILURES.iter().any(|(bit, _)| flags & bit != 0)
}

/// A low-cardinality `error.type` for a call that got no upstream response.
pub fn upstream_error_type(flags: u64) -> Option<&'static str> {
    UPSTREAM_FAILURES
        .iter()
        .find(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
}

/// The outcome of a span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub is_error: bool,
    /// `error.type`: the status code as text for HTTP errors, else an upstream failure name.
    pub error_type: Option<String>,
    /// Status description for ERROR spans.
    pub message: String,
}

/// SERVER span: ERROR only on 5xx, or when no response was sent at all (semconv: 4xx is the
/// client's fault, not the server's).
pub fn server_outcome(status: u16) -> Outcome {
    match status {
        500..=599 => Outcome {
            is_error: true,
            error_type: Some(status.to_string()),
            message: format!("HTTP {status}"),
        },
        0 => Outcome {
            is_error: true,
            error_type: Some(crate::semconv::OTHER.into()),
            message: "no response sent".into(),
        },
        _ => Outcome {
            is_error: false,
            error_type: None,
            message: String::new(),
        },
    }
}

/// CLIENT span: ERROR on 4xx/5xx from the upstream, and on reset / timeout / connect failure.
pub fn client_outcome(status: u16, responded: bool, flags: u64, code_details: &str) -> Outcome {
    if !responded {
        let error_type = upstream_error_type(flags).unwrap_or(crate::semconv::OTHER);
        let mut message = format!("upstream call failed: {error_type}");
        let f = flags_to_string(flags);
        if !f.is_empty() {
            message.push_str(&format!(" (response_flags={f})"));
        }
        if !code_details.is_empty() {
            message.push_str(&format!(" (code_details={code_details})"));
        }
        return Outcome {
            is_error: true,
            error_type: Some(error_type.to_string()),
            message,
        };
    }
    match status {
        400..=599 => Outcome {
            is_error: true,
            error_type: Some(status.to_string()),
            message: format!("HTTP {status}"),
        },
        _ => Outcome {
            is_error: false,
            error_type: None,
            message: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_rows() {
        struct Row {
            status: u16,
            error: bool,
            reason: &'static str,
        }
        #[rustfmt::skip]
        let rows = [
            Row { status: 200, error: false, reason: "ok" },
            Row { status: 404, error: false, reason: "4xx is not a server error" },
            Row { status: 499, error: false, reason: "client closed" },
            Row { status: 500, error: true, reason: "5xx" },
            Row { status: 503, error: true, reason: "envoy local 503" },
            Row { status: 0, error: true, reason: "nothing sent" },
        ];
        for Row {
            status,
            error,
            reason,
        } in rows
        {
            assert_eq!(server_outcome(status).is_error, error, "{reason}");
        }
        assert_eq!(server_outcome(502).error_type.as_deref(), Some("502"));
    }

    #[test]
    fn client_rows() {
        struct Row {
            status: u16,
            responded: bool,
            flags: u64,
            /// `None`: not an error.
            error_type: Option<&'static str>,
            reason: &'static str,
        }
        #[rustfmt::skip]
        let rows = [
            Row { status: 200, responded: true, flags: 0, error_type: None, reason: "ok" },
            Row { status: 302, responded: true, flags: 0, error_type: None, reason: "redirect" },
            Row { status: 404, responded: true, flags: 0, error_type: Some("404"), reason: "4xx is a client-span error" },
            Row { status: 500, responded: true, flags: 0, error_type: Some("500"), reason: "upstream 5xx" },
            Row { status: 503, responded: false, flags: 0x20, error_type: Some("connection_failure"), reason: "connection refused" },
            Row { status: 504, responded: false, flags: 0x4, error_type: Some("timeout"), reason: "upstream timeout" },
            Row { status: 503, responded: false, flags: 0x10, error_type: Some("upstream_reset"), reason: "reset" },
            Row { status: 503, responded: false, flags: 0x8000 | 0x20, error_type: Some("connection_failure"), reason: "retries exhausted, cause wins" },
            Row { status: 503, responded: false, flags: 0x2, error_type: Some("no_healthy_upstream"), reason: "no healthy host" },
            Row { status: 0, responded: false, flags: 0, error_type: Some("_OTHER"), reason: "unknown" },
        ];
        for Row {
            status,
            responded,
            flags,
            error_type: want_type,
            reason,
        } in rows
        {
            let o = client_outcome(status, responded, flags, "");
            assert_eq!(o.error_type.as_deref(), want_type, "{reason}");
            assert_eq!(o.is_error, want_type.is_some(), "{reason}");
        }
    }

    #[test]
    fn failure_message_names_flags_and_details() {
        let o = client_outcome(
            503,
            false,
            0x20,
            "upstream_reset_before_response_started{connection_refused}",
        );
        assert_eq!(
            o.message,
            "upstream call failed: connection_failure (response_flags=UF) (code_details=upstream_reset_before_response_started{connection_refused})"
        );
    }

    #[test]
    fn flag_bits_are_distinct_and_in_order() {
        for (i, (bit, _)) in RESPONSE_FLAGS.iter().enumerate() {
            assert_eq!(*bit, 1u64 << i, "RESPONSE_FLAGS[{i}]");
        }
    }

    #[test]
    fn flag_strings() {
        assert_eq!(flags_to_string(0), "");
        assert_eq!(flags_to_string(0x20 | 0x8000), "UF,URX");
        assert!(upstream_failed(0x20));
        assert!(!upstream_failed(0x100), "NR is not an upstream failure");
    }
}

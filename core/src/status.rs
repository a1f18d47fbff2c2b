//! How a finished request maps to span status and `error.type`: HTTP status classes (OTel HTTP
//! semconv), and Envoy's response flags for calls that got no upstream response.

/// Envoy's response flags (`response.flags`, the legacy bit vector) with their short names, as
/// in Envoy's access log `%RESPONSE_FLAGS%`.
pub const RESPONSE_FLAGS: [(u64, &str); 29] = [
    (0x1, "LH"),
    (0x2, "UH"),
    (0x4, "UT"),
    (0x8, "LR"),
    (0x10, "UR"),
    (0x20, "UF"),
    (0x40, "UC"),
    (0x80, "UO"),
    (0x100, "NR"),
    (0x200, "DI"),
    (0x400, "FI"),
    (0x800, "RL"),
    (0x1000, "UAEX"),
    (0x2000, "RLSE"),
    (0x4000, "DC"),
    (0x8000, "URX"),
    (0x10000, "SI"),
    (0x20000, "IH"),
    (0x40000, "DPE"),
    (0x80000, "UMSDR"),
    (0x100000, "RFCF"),
    (0x200000, "NFCF"),
    (0x400000, "DT"),
    (0x800000, "UPE"),
    (0x1000000, "NC"),
    (0x2000000, "OM"),
    (0x4000000, "DF"),
    (0x8000000, "DO"),
    (0x10000000, "DR"),
];

/// Flags meaning "the upstream call was attempted and failed without a usable response".
const UPSTREAM_FAILURE_FLAGS: u64 =
    0x2 | 0x4 | 0x10 | 0x20 | 0x40 | 0x80 | 0x8000 | 0x80000 | 0x800000;

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

/// True when the flags say an upstream call was attempted and failed.
pub fn upstream_failed(flags: u64) -> bool {
    flags & UPSTREAM_FAILURE_FLAGS != 0
}

/// A low-cardinality `error.type` for a call that got no upstream response.
pub fn upstream_error_type(flags: u64) -> Option<&'static str> {
    // Most specific first: a retry-limit failure also carries the last attempt's cause.
    const ORDER: [(u64, &str); 9] = [
        (0x4, "timeout"),
        (0x20, "connection_failure"),
        (0x40, "connection_termination"),
        (0x10, "upstream_reset"),
        (0x80, "upstream_overflow"),
        (0x2, "no_healthy_upstream"),
        (0x80000, "max_stream_duration_reached"),
        (0x800000, "upstream_protocol_error"),
        (0x8000, "retry_limit_exceeded"),
    ];
    ORDER
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
        for (status, error, reason) in [
            (200, false, "ok"),
            (404, false, "4xx is not a server error"),
            (499, false, "client closed"),
            (500, true, "5xx"),
            (503, true, "envoy local 503"),
            (0, true, "nothing sent"),
        ] {
            assert_eq!(server_outcome(status).is_error, error, "{reason}");
        }
        assert_eq!(server_outcome(502).error_type.as_deref(), Some("502"));
    }

    #[test]
    fn client_rows() {
        for (status, responded, flags, want_type, reason) in [
            (200, true, 0, None, "ok"),
            (302, true, 0, None, "redirect"),
            (404, true, 0, Some("404"), "4xx is a client-span error"),
            (500, true, 0, Some("500"), "upstream 5xx"),
            (
                503,
                false,
                0x20,
                Some("connection_failure"),
                "connection refused",
            ),
            (504, false, 0x4, Some("timeout"), "upstream timeout"),
            (503, false, 0x10, Some("upstream_reset"), "reset"),
            (
                503,
                false,
                0x8000 | 0x20,
                Some("connection_failure"),
                "retries exhausted, cause wins",
            ),
            (
                503,
                false,
                0x2,
                Some("no_healthy_upstream"),
                "no healthy host",
            ),
            (0, false, 0, Some("_OTHER"), "unknown"),
        ] {
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
    fn flag_strings() {
        assert_eq!(flags_to_string(0), "");
        assert_eq!(flags_to_string(0x20 | 0x8000), "UF,URX");
        assert!(upstream_failed(0x20));
        assert!(!upstream_failed(0x100), "NR is not an upstream failure");
    }
}

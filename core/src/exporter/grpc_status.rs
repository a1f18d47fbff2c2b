//! gRPC status codes (grpc `doc/statuscodes.md`) and what each means for an OTLP exporter
//! (OTLP specification, "OTLP/gRPC Response": which are retryable). Read by the answer's
//! classification ([`super::response`]) and the gRPC framing ([`super::grpc`]).

/// gRPC status codes (grpc `doc/statuscodes.md`), the ones the exporter names.
pub mod code {
    pub const OK: u32 = 0;
    pub const CANCELLED: u32 = 1;
    pub const UNKNOWN: u32 = 2;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const ABORTED: u32 = 10;
    pub const OUT_OF_RANGE: u32 = 11;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const DATA_LOSS: u32 = 15;
}

/// The canonical name of a gRPC status code.
pub fn code_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("(unknown code)")
}

/// Retryable per the OTLP specification ("OTLP/gRPC Response", "Failures"):
/// RESOURCE_EXHAUSTED only when the server sent a `RetryInfo` (it will recover).
pub fn is_retryable(code: u32, retry_info: bool) -> bool {
    match code {
        code::CANCELLED
        | code::DEADLINE_EXCEEDED
        | code::ABORTED
        | code::OUT_OF_RANGE
        | code::UNAVAILABLE
        | code::DATA_LOSS => true,
        code::RESOURCE_EXHAUSTED => retry_info,
        _ => false,
    }
}

//! What request start needs to know about the placement: in the upstream-filter placement the
//! routes match the path before the router's rewrite, and each attempt records the path and
//! authority the upstream receives ([`Attempt`]). The per-attempt logic itself lives in
//! [`super::attempt`].

use crate::config::Mode;
use crate::host::HeaderMap;

/// The path before the route's rewrite; Envoy's router adds it upstream when it rewrites.
pub const ORIGINAL_PATH_HEADER: &str = "x-envoy-original-path";
/// One attempt, as seen at its request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt, 2 for the first retry or hedge, …
    pub number: u32,
    /// `:path` and `:authority` the upstream receives (after the route's rewrites). The
    /// header map is gone by the time the attempt ends.
    pub path: String,
    pub authority: String,
}

/// The path the downstream request had: routes (`http.route`, route params) match on it. The
/// upstream filter sees the rewritten `:path`, and the original in `x-envoy-original-path`.
pub(super) fn downstream_path(mode: Mode, headers: &HeaderMap) -> &str {
    let original = match mode {
        Mode::UpstreamFilter => headers.get(ORIGINAL_PATH_HEADER),
        _ => None,
    };
    original.or_else(|| headers.get(":path")).unwrap_or("/")
}

/// The attempt's request as the upstream gets it (upstream-filter placement only). The
/// attempt number is settled by [`start_attempt`].
pub(super) fn at_start(mode: Mode, headers: &HeaderMap) -> Option<Attempt> {
    (mode == Mode::UpstreamFilter).then(|| Attempt {
        number: 1,
        path: headers.get(":path").unwrap_or("/").to_string(),
        authority: headers.get(":authority").unwrap_or("").to_string(),
    })
}

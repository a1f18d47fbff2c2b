//! Where the filter sits and who makes the CLIENT spans: the downstream (HCM) placement alone
//! (`mode: "gateway"`, one CLIENT span per call covering every retry), or the downstream
//! placement for the SERVER span plus the upstream-filter placement (a cluster's
//! `http_filters`, `mode: "upstream_filter"`) for one CLIENT span per attempt.
//!
//! Combinations that cannot work are refused at configuration load ([`validate`]).

use super::{err, ConfigError, Mode};
use serde::Deserialize;

/// Who makes the CLIENT spans of a gateway (`client_spans`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientSpans {
    /// This filter: one CLIENT span per upstream call, covering every retry.
    #[default]
    PerCall,
    /// The same wasm in the upstream-filter placement (`mode: "upstream_filter"`): one CLIENT
    /// span per attempt. This filter makes none and hands the upstream filter its SERVER span
    /// id as the parent (in `traceparent`).
    UpstreamFilter,
}

impl ClientSpans {
    fn as_str(self) -> &'static str {
        match self {
            ClientSpans::PerCall => "per_call",
            ClientSpans::UpstreamFilter => "upstream_filter",
        }
    }
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Gateway => "gateway",
            Mode::SidecarInbound => "sidecar_inbound",
            Mode::SidecarOutbound => "sidecar_outbound",
            Mode::UpstreamFilter => "upstream_filter",
        }
    }

    /// This placement makes a SERVER span.
    pub fn has_server_span(self) -> bool {
        matches!(self, Mode::Gateway | Mode::SidecarInbound)
    }
}

/// `client_spans` is a gateway's choice only: an inbound sidecar makes no CLIENT span, an
/// outbound sidecar and the upstream filter always make theirs (one per call, one per attempt).
pub(super) fn validate(
    mode: Mode,
    client_spans: Option<ClientSpans>,
) -> Result<ClientSpans, ConfigError> {
    match (mode, client_spans) {
        (_, None) => Ok(ClientSpans::PerCall),
        (Mode::Gateway, Some(c)) => Ok(c),
        (m, Some(c)) => Err(err(
            "client_spans",
            c.as_str(),
            match m {
                Mode::UpstreamFilter => "only for mode \"gateway\" (mode \"upstream_filter\" \
                                         makes one CLIENT span per attempt itself)"
                    .to_string(),
                m => format!("only for mode \"gateway\" (mode is \"{}\")", m.as_str()),
            },
        )),
    }
}

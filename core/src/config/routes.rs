//! The `routes` section: low-cardinality route templates (`/api/cart/:cartId/add`) and the
//! upstream templates CLIENT spans are named with.

use super::{err, ConfigError};
use crate::route::{Route, RouteTable, RouteTemplate};
use crate::sampler::{Ratio, Sampler};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub template: String,
    #[serde(default)]
    pub upstream_template: Option<String>,
    /// This route's ratio for the `*traceidratio` samplers (overrides `sampler_ratio`).
    #[serde(default)]
    pub sampler_ratio: Option<f64>,
}

/// Validates the `routes` section.
pub(super) fn validate(raw: &[RawRoute], sampler: Sampler) -> Result<RouteTable, ConfigError> {
    let mut routes = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let template = RouteTemplate::parse(&r.template)
            .map_err(|reason| err(format!("routes[{i}].template"), r.template.clone(), reason))?;
        let upstream_template = match &r.upstream_template {
            None => None,
            Some(u) => Some(RouteTemplate::parse(u).map_err(|reason| {
                err(format!("routes[{i}].upstream_template"), u.clone(), reason)
            })?),
        };
        let ratio = match r.sampler_ratio {
            None => None,
            Some(p) => {
                let field = format!("routes[{i}].sampler_ratio");
                if !sampler.uses_ratio() {
                    return Err(err(
                        field,
                        p.to_string(),
                        "only the traceidratio and parentbased_traceidratio samplers use a ratio",
                    ));
                }
                Some(
                    Ratio::new(p)
                        .ok_or_else(|| err(field, p.to_string(), "must be between 0 and 1"))?,
                )
            }
        };
        routes.push(Route {
            template,
            upstream_template,
            ratio,
        });
    }

    Ok(RouteTable { routes })
}

//! The `routes` section: low-cardinality route templates (`/api/cart/:cartId/add`) and the
//! upstream templates CLIENT spans are named with.

use super::{err, ConfigError};
use crate::route::{Route, RouteTable, RouteTemplate};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub template: String,
    #[serde(default)]
    pub upstream_template: Option<String>,
}

/// Validates the `routes` section.
pub(super) fn validate(raw: &[RawRoute]) -> Result<RouteTable, ConfigError> {
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
        routes.push(Route {
            template,
            upstream_template,
        });
    }

    Ok(RouteTable { routes })
}

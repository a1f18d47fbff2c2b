//! The `clusters` section: what each upstream cluster is (a named service, or a Durable
//! Object class with where its id comes from), for naming CLIENT spans.

use super::{err, is_header_name, structural, ConfigError};
use crate::route::RouteTable;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a Durable Object's id comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DurableObjectId {
    /// A `:param` of the matched route template (`cartId`).
    RouteParam(String),
    /// A request header (`x-cart-id`).
    Header(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub durable_object: Option<RawDurableObject>,
    #[serde(default)]
    pub protocol_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDurableObject {
    pub name: String,
    pub id: DurableObjectId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableObject {
    pub name: String,
    pub id: DurableObjectId,
}

/// What an upstream cluster is, for naming CLIENT spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTarget {
    /// `AUTH_SERVICE`; defaults to the cluster name.
    pub service: String,
    pub durable_object: Option<DurableObject>,
    /// HTTP version the cluster speaks upstream (`1.1`, `2`), as configured: Envoy does not
    /// tell a filter which protocol an upstream connection uses.
    pub protocol_version: Option<String>,
}

/// Accepted `clusters.<name>.protocol_version` values (`network.protocol.version`).
pub const PROTOCOL_VERSIONS: [&str; 4] = ["1.0", "1.1", "2", "3"];

impl ClusterTarget {
    /// The name CLIENT spans lead with: the Durable Object class, else the service.
    pub fn service_label(&self) -> &str {
        self.durable_object
            .as_ref()
            .map_or(&self.service, |d| &d.name)
    }
}

/// Validates the `clusters` section (Durable Object route params must exist in `routes`).
pub(super) fn validate(
    raw: BTreeMap<String, RawCluster>,
    routes: &RouteTable,
) -> Result<BTreeMap<String, Arc<ClusterTarget>>, ConfigError> {
    let mut clusters = BTreeMap::new();
    for (name, c) in raw {
        let field = format!("clusters.{name}");
        if name.is_empty() {
            return Err(structural("clusters", "cluster names must not be empty"));
        }
        let service = match c.service {
            Some(s) if s.trim().is_empty() => {
                return Err(err(format!("{field}.service"), s, "must not be empty"))
            }
            Some(s) => s,
            None => name.clone(),
        };
        let durable_object = match c.durable_object {
            None => None,
            Some(d) => {
                if d.name.trim().is_empty() {
                    return Err(err(
                        format!("{field}.durable_object.name"),
                        d.name,
                        "must not be empty",
                    ));
                }
                // Header names are case-insensitive: lower-case them rather than refuse.
                let id = match d.id {
                    DurableObjectId::Header(h) => DurableObjectId::Header(h.to_ascii_lowercase()),
                    other => other,
                };
                match &id {
                    DurableObjectId::RouteParam(p) => {
                        if !routes.routes.iter().any(|r| r.template.has_param(p)) {
                            return Err(err(
                                format!("{field}.durable_object.id.route_param"),
                                p.clone(),
                                "no route template has this :param",
                            ));
                        }
                    }
                    DurableObjectId::Header(h) => {
                        if !is_header_name(h) {
                            return Err(err(
                                format!("{field}.durable_object.id.header"),
                                h.clone(),
                                "must be an HTTP header name (token characters)",
                            ));
                        }
                    }
                }
                Some(DurableObject { name: d.name, id })
            }
        };
        if let Some(v) = &c.protocol_version {
            if !PROTOCOL_VERSIONS.contains(&v.as_str()) {
                return Err(err(
                    format!("{field}.protocol_version"),
                    v.clone(),
                    "must be one of 1.0, 1.1, 2, 3 (2 for h2 and h2c)",
                ));
            }
        }
        clusters.insert(
            name,
            Arc::new(ClusterTarget {
                service,
                durable_object,
                protocol_version: c.protocol_version,
            }),
        );
    }

    Ok(clusters)
}

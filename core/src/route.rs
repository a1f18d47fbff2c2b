//! Low-cardinality route templates (`/api/cart/:cartId/add`): parsing, matching a request path,
//! and capturing the `:param` values (the Durable Object id comes from one).
//!
//! Span names are built from templates only, never from a raw path (OTel HTTP semconv: span
//! name is `{method} {http.route}`, or just `{method}` when no route is known).

/// One `/`-separated piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `:name`: exactly one non-empty path segment.
    Param(String),
    /// `*` as the last segment: any remainder, including nothing.
    Rest,
}

/// A parsed route template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate {
    raw: String,
    segments: Vec<Segment>,
}

/// Captured `:param` values of a match, in template order.
pub type Params = Vec<(String, String)>;

impl RouteTemplate {
    /// Parses a template. The error text says what is wrong (used in config errors).
    pub fn parse(raw: &str) -> Result<Self, String> {
        if !raw.starts_with('/') {
            return Err("must start with '/'".into());
        }
        if raw.contains(['?', '#']) {
            return Err("must not contain a query or fragment".into());
        }
        let mut segments = Vec::new();
        let parts: Vec<&str> = raw.split('/').skip(1).collect();
        for (i, part) in parts.iter().enumerate() {
            if let Some(name) = part.strip_prefix(':') {
                if !is_name(name) {
                    return Err(format!(
                        "parameter ':{name}' is not a name ([A-Za-z_][A-Za-z0-9_]*)"
                    ));
                }
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(p) if p == name))
                {
                    return Err(format!("parameter ':{name}' appears twice"));
                }
                segments.push(Segment::Param(name.to_string()));
            } else if *part == "*" {
                if i + 1 != parts.len() {
                    return Err("'*' is only allowed as the last segment".into());
                }
                segments.push(Segment::Rest);
            } else {
                segments.push(Segment::Literal(part.to_string()));
            }
        }
        Ok(RouteTemplate {
            raw: raw.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn has_param(&self, name: &str) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Param(p) if p == name))
    }

    /// Matches a path (query already removed). Returns the captured params on a match.
    pub fn matches(&self, path: &str) -> Option<Params> {
        let mut params = Params::new();
        let mut parts = path.strip_prefix('/')?.split('/');
        for seg in &self.segments {
            match seg {
                Segment::Rest => return Some(params),
                Segment::Literal(lit) => {
                    if parts.next()? != lit {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let value = parts.next()?;
                    if value.is_empty() {
                        return None;
                    }
                    params.push((name.clone(), value.to_string()));
                }
            }
        }
        parts.next().is_none().then_some(params)
    }
}

/// One configured route: the template the gateway sees and, optionally, the template of the
/// path the upstream service receives after Envoy's rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub template: RouteTemplate,
    pub upstream_template: Option<RouteTemplate>,
}

/// Ordered routes; the first match wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    pub routes: Vec<Route>,
}

impl RouteTable {
    pub fn find(&self, path: &str) -> Option<(&Route, Params)> {
        self.find_index(path)
            .and_then(|(i, p)| self.routes.get(i).map(|r| (r, p)))
    }

    /// Like [`find`](Self::find), with the route's position in the table.
    pub fn find_index(&self, path: &str) -> Option<(usize, Params)> {
        self.routes
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.template.matches(path).map(|p| (i, p)))
    }

    /// The template that names what the upstream receives: the route's `upstream_template`,
    /// else a template matching the (possibly rewritten) upstream path, else the route's own.
    pub fn upstream_template<'a>(
        &'a self,
        route: Option<&'a Route>,
        upstream_path: Option<&str>,
    ) -> Option<&'a RouteTemplate> {
        if let Some(t) = route.and_then(|r| r.upstream_template.as_ref()) {
            return Some(t);
        }
        if let Some(found) = upstream_path.and_then(|p| self.find(p)) {
            return Some(&found.0.template);
        }
        route.map(|r| &r.template)
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: route parameter and environment variable names.
pub fn is_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> RouteTemplate {
        RouteTemplate::parse(s).unwrap()
    }

    #[test]
    fn match_rows() {
        for (template, path, want, reason) in [
            ("/api/products", "/api/products", Some(vec![]), "literal"),
            (
                "/api/products",
                "/api/products/",
                None,
                "trailing slash is another path",
            ),
            ("/api/products", "/api/products/p-1", None, "extra segment"),
            (
                "/api/products/:id",
                "/api/products/p-1",
                Some(vec![("id", "p-1")]),
                "one param",
            ),
            ("/api/products/:id", "/api/products/", None, "empty param"),
            (
                "/api/cart/:cartId/add",
                "/api/cart/c-42/add",
                Some(vec![("cartId", "c-42")]),
                "param in the middle",
            ),
            (
                "/api/cart/:cartId/add",
                "/api/cart/c-42/remove",
                None,
                "literal after param differs",
            ),
            (
                "/static/*",
                "/static/a/b.css",
                Some(vec![]),
                "rest wildcard",
            ),
            ("/static/*", "/static", Some(vec![]), "rest may be empty"),
            (
                "/static/*",
                "/staticx/a",
                None,
                "rest starts at a segment boundary",
            ),
            ("/", "/", Some(vec![]), "root"),
        ] {
            let got = t(template).matches(path);
            let want: Option<Params> = want.map(|v| {
                v.into_iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect()
            });
            assert_eq!(got, want, "{reason}");
        }
    }

    #[test]
    fn parse_errors() {
        for (template, want, reason) in [
            ("api/x", "must start with '/'", "relative"),
            ("/a?b=1", "must not contain a query or fragment", "query"),
            (
                "/a/:",
                "parameter ':' is not a name ([A-Za-z_][A-Za-z0-9_]*)",
                "empty param name",
            ),
            (
                "/a/:1x",
                "parameter ':1x' is not a name ([A-Za-z_][A-Za-z0-9_]*)",
                "param starts with digit",
            ),
            (
                "/a/:id/:id",
                "parameter ':id' appears twice",
                "duplicate param",
            ),
            (
                "/a/*/b",
                "'*' is only allowed as the last segment",
                "wildcard in middle",
            ),
        ] {
            assert_eq!(
                RouteTemplate::parse(template).unwrap_err(),
                want,
                "{reason}"
            );
        }
    }

    #[test]
    fn first_match_wins_and_upstream_template() {
        let table = RouteTable {
            routes: vec![
                Route {
                    template: t("/api/products/featured"),
                    upstream_template: None,
                },
                Route {
                    template: t("/api/products/:id"),
                    upstream_template: Some(t("/products/:id")),
                },
                Route {
                    template: t("/products/:id"),
                    upstream_template: None,
                },
            ],
        };
        let (r, _) = table.find("/api/products/featured").unwrap();
        assert_eq!(r.template.as_str(), "/api/products/featured");
        let (r, p) = table.find("/api/products/p-1").unwrap();
        assert_eq!(p, vec![("id".to_string(), "p-1".to_string())]);
        assert_eq!(
            table.upstream_template(Some(r), None).unwrap().as_str(),
            "/products/:id"
        );
        assert_eq!(
            table
                .upstream_template(None, Some("/products/p-9"))
                .unwrap()
                .as_str(),
            "/products/:id"
        );
        assert!(table.upstream_template(None, Some("/nothing")).is_none());
    }
}

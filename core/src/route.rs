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
            // `:id` (Express style) or `{id}` (OpenAPI style), a whole segment either way.
            let param = part
                .strip_prefix(':')
                .or_else(|| part.strip_prefix('{').and_then(|p| p.strip_suffix('}')));
            if part.contains(['{', '}']) && param.is_none_or(|_| !part.starts_with('{')) {
                return Err(format!(
                    "'{part}': an OpenAPI-style parameter must be a whole segment, like /shop/{{id}} or /shop/:id"
                ));
            }
            if let Some(name) = param {
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
    /// The route's own sampling ratio, if configured.
    pub ratio: Option<crate::sampler::Ratio>,
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

    /// Whether any route has its own sampling ratio (then sampling needs the route).
    pub fn has_ratios(&self) -> bool {
        self.routes.iter().any(|r| r.ratio.is_some())
    }

    /// Like [`find`](Self::find), with the route's position in the table.
    pub fn find_index(&self, path: &str) -> Option<(usize, Params)> {
        self.routes
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.template.matches(path).map(|p| (i, p)))
    }

    /// The template that names what the upstream receives: the route's `upstream_template`,
    /// else a template matching the (possibly rewritten) upstream path, else the route's own
    /// when it matches that path too (or the upstream path is unknown); otherwise `None`.
    pub fn upstream_template<'a>(
        &'a self,
        route: Option<&'a Route>,
        upstream_path: Option<&str>,
    ) -> Option<&'a RouteTemplate> {
        if let Some(t) = route.and_then(|r| r.upstream_template.as_ref()) {
            return Some(t);
        }
        match upstream_path {
            Some(p) => {
                if let Some(found) = self.find(p) {
                    return Some(&found.0.template);
                }
                // The downstream template names the upstream path only if it matches it (no
                // rewrite, or one that kept its shape); otherwise nothing is known.
                route
                    .map(|r| &r.template)
                    .filter(|t| t.matches(p).is_some())
            }
            None => route.map(|r| &r.template),
        }
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
        struct Row {
            template: &'static str,
            path: &'static str,
            /// `None`: no match; `Some`: the captured parameters, in order.
            params: Option<&'static [(&'static str, &'static str)]>,
            reason: &'static str,
        }
        #[rustfmt::skip]
        let rows = [
            Row { template: "/api/products", path: "/api/products", params: Some(&[]), reason: "literal" },
            Row { template: "/api/products", path: "/api/products/", params: None, reason: "trailing slash is another path" },
            Row { template: "/api/products", path: "/api/products/p-1", params: None, reason: "extra segment" },
            Row { template: "/api/products/:id", path: "/api/products/p-1", params: Some(&[("id", "p-1")]), reason: "one param" },
            Row { template: "/api/products/:id", path: "/api/products/", params: None, reason: "empty param" },
            Row { template: "/api/cart/:cartId/add", path: "/api/cart/c-42/add", params: Some(&[("cartId", "c-42")]), reason: "param in the middle" },
            Row { template: "/api/cart/:cartId/add", path: "/api/cart/c-42/remove", params: None, reason: "literal after param differs" },
            Row { template: "/static/*", path: "/static/a/b.css", params: Some(&[]), reason: "rest wildcard" },
            Row { template: "/static/*", path: "/static", params: Some(&[]), reason: "rest may be empty" },
            Row { template: "/static/*", path: "/staticx/a", params: None, reason: "rest starts at a segment boundary" },
            Row { template: "/", path: "/", params: Some(&[]), reason: "root" },
            Row { template: "/shop/{id}", path: "/shop/s-1", params: Some(&[("id", "s-1")]), reason: "OpenAPI-style {param} is a param too" },
            Row { template: "/shop/{id}/items/:item", path: "/shop/s-1/items/i-2", params: Some(&[("id", "s-1"), ("item", "i-2")]), reason: "both styles in one template" },
        ];
        for Row {
            template,
            path,
            params: want,
            reason,
        } in rows
        {
            let got = t(template).matches(path);
            let want: Option<Params> = want.map(|v| {
                v.iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect()
            });
            assert_eq!(got, want, "{reason}");
        }
    }

    #[test]
    fn parse_errors() {
        struct Row {
            template: &'static str,
            error: &'static str,
            reason: &'static str,
        }
        #[rustfmt::skip]
        let rows = [
            Row { template: "api/x", error: "must start with '/'", reason: "relative" },
            Row { template: "/a?b=1", error: "must not contain a query or fragment", reason: "query" },
            Row { template: "/a/:", error: "parameter ':' is not a name ([A-Za-z_][A-Za-z0-9_]*)", reason: "empty param name" },
            Row { template: "/a/:1x", error: "parameter ':1x' is not a name ([A-Za-z_][A-Za-z0-9_]*)", reason: "param starts with digit" },
            Row { template: "/a/:id/:id", error: "parameter ':id' appears twice", reason: "duplicate param" },
            Row { template: "/a/*/b", error: "'*' is only allowed as the last segment", reason: "wildcard in middle" },
            Row { template: "/shop/id-{id}", error: "'id-{id}': an OpenAPI-style parameter must be a whole segment, like /shop/{id} or /shop/:id", reason: "partial-segment OpenAPI param is refused, not silently literal" },
            Row { template: "/shop/{id", error: "'{id': an OpenAPI-style parameter must be a whole segment, like /shop/{id} or /shop/:id", reason: "unbalanced brace" },
            Row { template: "/shop/{1}", error: "parameter ':1' is not a name ([A-Za-z_][A-Za-z0-9_]*)", reason: "OpenAPI param name checked like :param" },
        ];
        for Row {
            template,
            error: want,
            reason,
        } in rows
        {
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
                    ratio: None,
                },
                Route {
                    template: t("/api/products/:id"),
                    upstream_template: Some(t("/products/:id")),
                    ratio: None,
                },
                Route {
                    template: t("/products/:id"),
                    upstream_template: None,
                    ratio: None,
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

        // A rewrite that leaves no template matching: the downstream template does not name
        // the upstream path (it used to), so there is none.
        let (featured, _) = table.find("/api/products/featured").unwrap();
        assert!(table
            .upstream_template(Some(featured), Some("/internal/x"))
            .is_none());
        assert_eq!(
            table
                .upstream_template(Some(featured), Some("/api/products/featured"))
                .unwrap()
                .as_str(),
            "/api/products/featured",
            "no rewrite: the route's own template"
        );
        assert_eq!(
            table
                .upstream_template(Some(featured), None)
                .unwrap()
                .as_str(),
            "/api/products/featured",
            "upstream path unknown: the route's own template"
        );
    }
}

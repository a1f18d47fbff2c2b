//! The demo e-commerce services behind the gateway.
//!
//! This module owns the five small JSON services of the demo shop (modelled
//! on a Cloudflare Workers gateway design) and [`serve`], which runs one of
//! them as a real HTTP server:
//!
//! | service      | routes                                                        |
//! |--------------|---------------------------------------------------------------|
//! | auth         | `POST /auth/login`                                            |
//! | products     | `GET /products`, `GET /products/:id` (`p-1`..`p-3`, else 404) |
//! | cart         | `POST /cart/add?cartId=ID` body `{"productId":"p-1","qty":1}` |
//! | orders       | `POST /orders` → 201                                          |
//! | fulfillment  | `GET /shipping-options`                                       |
//!
//! Every service also answers `GET /healthz`. The cart (the
//! "CartDurableObject") calls products and fulfillment through its Envoy
//! sidecar's outbound listener, forwarding the trace context.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tiny_http::{Method, Request};

use crate::http::{self, ServerHandle};

/// Default outbound (sidecar egress) base URL used by the cart.
pub const DEFAULT_OUTBOUND: &str = "http://127.0.0.1:10002";

/// One of the demo services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Auth,
    Products,
    Cart,
    Orders,
    Fulfillment,
}

impl Service {
    /// All services, in default-port order.
    pub const ALL: [Service; 5] = [
        Service::Auth,
        Service::Products,
        Service::Cart,
        Service::Orders,
        Service::Fulfillment,
    ];

    /// Lower-case name (`"auth"`, `"products"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Service::Auth => "auth",
            Service::Products => "products",
            Service::Cart => "cart",
            Service::Orders => "orders",
            Service::Fulfillment => "fulfillment",
        }
    }

    /// Default listen address used by `shop all`.
    pub fn default_listen(self) -> &'static str {
        match self {
            Service::Auth => "127.0.0.1:18081",
            Service::Products => "127.0.0.1:18082",
            Service::Cart => "127.0.0.1:18083",
            Service::Orders => "127.0.0.1:18084",
            Service::Fulfillment => "127.0.0.1:18085",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Service {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|svc| svc.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown service {s:?} (expected auth|products|cart|orders|fulfillment)")
            })
    }
}

/// A running service. Stops on drop.
pub struct ServiceHandle {
    service: Service,
    server: ServerHandle,
}

impl ServiceHandle {
    pub fn service(&self) -> Service {
        self.service
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }
}

/// Starts `service` on `listen` (`":0"` for an ephemeral port). `outbound` is
/// the base URL the cart uses to reach products and fulfillment (ignored by
/// the other services).
pub fn serve(service: Service, listen: &str, outbound: &str) -> io::Result<ServiceHandle> {
    let ctx = Arc::new(Ctx {
        service,
        outbound: outbound.trim_end_matches('/').to_string(),
        agent: ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build(),
        next_order: AtomicU64::new(1001),
    });
    let server = ServerHandle::spawn(listen, 4, service.name(), move |req| ctx.handle(req))?;
    Ok(ServiceHandle { service, server })
}

struct Ctx {
    service: Service,
    outbound: String,
    agent: ureq::Agent,
    next_order: AtomicU64,
}

/// A reply: status and JSON body.
type Reply = (u16, Value);

fn products() -> Value {
    json!([
        {"id": "p-1", "name": "Espresso Machine", "price": 249.0, "currency": "USD"},
        {"id": "p-2", "name": "Coffee Grinder", "price": 89.5, "currency": "USD"},
        {"id": "p-3", "name": "Milk Frother", "price": 39.9, "currency": "USD"},
    ])
}

fn shipping_options() -> Value {
    json!([
        {"id": "standard", "name": "Standard", "price": 4.99, "days": 5},
        {"id": "express", "name": "Express", "price": 14.99, "days": 1},
    ])
}

fn not_found(service: Service, path: &str) -> Reply {
    (
        404,
        json!({"error": "not found", "service": service.name(), "path": path}),
    )
}

fn method_not_allowed(service: Service, method: &Method) -> Reply {
    (
        405,
        json!({"error": format!("method {method} not allowed"), "service": service.name()}),
    )
}

impl Ctx {
    fn handle(&self, mut req: Request) {
        let method = req.method().clone();
        let url = req.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
        let headers = http::headers_of(&req);
        let body = http::read_body(&mut req).unwrap_or_default();

        let (status, value) = if path == "/healthz" {
            (200, json!({"ok": true, "service": self.service.name()}))
        } else {
            match self.service {
                Service::Auth => auth(&method, path),
                Service::Products => product_routes(&method, path),
                Service::Orders => self.orders(&method, path, &body),
                Service::Fulfillment => fulfillment(&method, path),
                Service::Cart => self.cart(&method, path, query, &headers, &body),
            }
        };
        let mut resp =
            tiny_http::Response::from_data(value.to_string().into_bytes()).with_status_code(status);
        for (k, v) in [
            ("Content-Type", "application/json"),
            ("x-service", self.service.name()),
        ] {
            if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                resp.add_header(h);
            }
        }
        let _ = req.respond(resp);
    }

    fn orders(&self, method: &Method, path: &str, body: &[u8]) -> Reply {
        if path != "/orders" {
            return not_found(Service::Orders, path);
        }
        if *method != Method::Post {
            return method_not_allowed(Service::Orders, method);
        }
        let order: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let n = self.next_order.fetch_add(1, Ordering::SeqCst);
        (
            201,
            json!({
                "orderId": format!("o-{n}"),
                "status": "created",
                "items": order.get("items").cloned().unwrap_or_else(|| json!([])),
            }),
        )
    }

    fn cart(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Reply {
        if path != "/cart/add" {
            return not_found(Service::Cart, path);
        }
        if *method != Method::Post {
            return method_not_allowed(Service::Cart, method);
        }
        let Some(cart_id) = query_param(query, "cartId").filter(|c| !c.is_empty()) else {
            return (400, json!({"error": "missing query parameter cartId"}));
        };
        let parsed: Value = if body.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return (400, json!({"error": format!("invalid JSON body: {e}")})),
            }
        };
        let product_id = parsed
            .get("productId")
            .and_then(Value::as_str)
            .unwrap_or("p-1")
            .to_string();
        if !is_safe_id(&product_id) {
            return (
                400,
                json!({"error": "invalid productId", "productId": product_id}),
            );
        }
        let qty = parsed.get("qty").and_then(Value::as_u64).unwrap_or(1);

        // Trace context propagation: a real service instrumented with an OTel
        // SDK would start a span for this request and inject a new
        // `traceparent` into its outgoing calls. This demo app has no SDK, so
        // it forwards the incoming `traceparent` / `tracestate` unchanged;
        // the sidecar Envoy's outbound listener (tracing filter) then creates
        // the CLIENT spans as children of the inbound span, keeping one trace.
        let forward: Vec<(&str, &str)> = ["traceparent", "tracestate"]
            .into_iter()
            .filter_map(|name| http::header(headers, name).map(|v| (name, v)))
            .collect();

        let product = match self.get_json(&format!("/products/{product_id}"), &forward) {
            Ok(v) => v,
            Err(e) => return (502, json!({"error": "products call failed", "detail": e})),
        };
        let shipping = match self.get_json("/shipping-options", &forward) {
            Ok(v) => v,
            Err(e) => {
                return (
                    502,
                    json!({"error": "fulfillment call failed", "detail": e}),
                )
            }
        };
        (
            200,
            json!({
                "cartId": cart_id,
                "items": [{"productId": product_id, "qty": qty, "product": product}],
                "shipping": shipping,
            }),
        )
    }

    /// `GET {outbound}{path}` with the forwarded headers; the JSON reply or an error text.
    fn get_json(&self, path: &str, forward: &[(&str, &str)]) -> Result<Value, String> {
        let url = format!("{}{}", self.outbound, path);
        let mut call = self.agent.get(&url);
        for (k, v) in forward {
            call = call.set(k, v);
        }
        match call.call() {
            Ok(resp) => {
                let text = resp
                    .into_string()
                    .map_err(|e| format!("GET {url}: reading body: {e}"))?;
                serde_json::from_str(&text).map_err(|e| format!("GET {url}: invalid JSON: {e}"))
            }
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                Err(format!(
                    "GET {url}: status {code}: {}",
                    text.chars().take(200).collect::<String>()
                ))
            }
            // ureq transport errors already name the URL.
            Err(e) => Err(e.to_string()),
        }
    }
}

fn auth(method: &Method, path: &str) -> Reply {
    match path {
        "/auth/login" if *method == Method::Post => {
            (200, json!({"token": "demo-token", "user": "demo"}))
        }
        "/auth/login" => method_not_allowed(Service::Auth, method),
        _ => not_found(Service::Auth, path),
    }
}

fn product_routes(method: &Method, path: &str) -> Reply {
    let is_products = path == "/products" || path.starts_with("/products/");
    if !is_products {
        return not_found(Service::Products, path);
    }
    if *method != Method::Get {
        return method_not_allowed(Service::Products, method);
    }
    let all = products();
    match path.strip_prefix("/products/") {
        None | Some("") => (200, all),
        Some(id) => {
            let found = all
                .as_array()
                .and_then(|list| {
                    list.iter()
                        .find(|p| p.get("id").and_then(Value::as_str) == Some(id))
                })
                .cloned();
            match found {
                Some(p) => (200, p),
                None => (404, json!({"error": "product not found", "id": id})),
            }
        }
    }
}

fn fulfillment(method: &Method, path: &str) -> Reply {
    match path {
        "/shipping-options" if *method == Method::Get => (200, shipping_options()),
        "/shipping-options" => method_not_allowed(Service::Fulfillment, method),
        _ => not_found(Service::Fulfillment, path),
    }
}

fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// First value of `name` in a URL query string, percent- and `+`-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i) {
            Some(b'+') => out.push(b' '),
            Some(b'%') => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            Some(b) => out.push(*b),
            None => break,
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_round_trip() {
        for svc in Service::ALL {
            assert_eq!(svc.name().parse::<Service>(), Ok(svc));
        }
        assert_eq!(Service::from_str("CART"), Ok(Service::Cart));
        assert!(Service::from_str("gateway").is_err());
    }

    #[test]
    fn query_params_decode() {
        assert_eq!(
            query_param("cartId=c-42&x=1", "cartId").as_deref(),
            Some("c-42")
        );
        assert_eq!(
            query_param("a=1&cartId=c%2042", "cartId").as_deref(),
            Some("c 42")
        );
        assert_eq!(query_param("cartId", "cartId").as_deref(), Some(""));
        assert_eq!(query_param("", "cartId"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn product_lookup() {
        assert_eq!(product_routes(&Method::Get, "/products/p-2").0, 200);
        assert_eq!(product_routes(&Method::Get, "/products/p-9").0, 404);
        assert_eq!(
            product_routes(&Method::Get, "/products")
                .1
                .as_array()
                .map(Vec::len),
            Some(3)
        );
        assert_eq!(product_routes(&Method::Post, "/products").0, 405);
    }

    #[test]
    fn safe_ids() {
        assert!(is_safe_id("p-1"));
        assert!(!is_safe_id("../x"));
        assert!(!is_safe_id(""));
    }
}

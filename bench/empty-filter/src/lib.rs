//! An empty proxy-wasm HTTP filter: one root context, one HTTP context per request, one
//! `set_http_response_header` call. The floor a wasm filter cannot go below.
//!
//! Its plugin configuration can add host calls at log time, so `make bench` can price them:
//! `"props=N maps=M"` reads `response.code` N times and the request-header map M times per
//! request (rows `empty_props8`, `empty_maps2`); `"expr=N"` evaluates, N times at log, one CEL
//! expression that reads the same 8 log-phase attributes as gateway-tracing, through Envoy's
//! `expr_create`/`expr_evaluate` foreign functions (row `empty_expr1`).

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(EmptyRoot::default()) });
}}

#[derive(Default, Clone, Copy)]
struct EmptyRoot {
    props: usize,
    maps: usize,
    exprs: usize,
    /// The compiled expression's token (`expr_create`), when `exprs` > 0 and Envoy has CEL.
    token: Option<u32>,
}

static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Eight log-phase attributes in one CEL list (absent ones as "").
const LOG_EXPR: &str = r#"[response.code, response.flags, has(upstream.address) ? upstream.address : "", has(upstream.tls_version) ? upstream.tls_version : "", request.path, request.host, source.address, request.protocol]"#;

impl Context for EmptyRoot {}

impl RootContext for EmptyRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = self
            .get_plugin_configuration()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        // `cel=<expression>` (the rest of the configuration): evaluate that instead of LOG_EXPR.
        let (text, cel) = match text.split_once("cel=") {
            Some((head, expr)) => (head.to_string(), Some(expr.to_string())),
            None => (text, None),
        };
        for part in text.split_whitespace() {
            let mut kv = part.splitn(2, '=');
            let (k, v) = (kv.next(), kv.next().and_then(|v| v.parse().ok()));
            match (k, v) {
                (Some("props"), Some(n)) => self.props = n,
                (Some("maps"), Some(n)) => self.maps = n,
                (Some("expr"), Some(n)) => self.exprs = n,
                _ => {}
            }
        }
        if self.exprs > 0 {
            let expr = cel.as_deref().unwrap_or(LOG_EXPR);
            match proxy_wasm::hostcalls::call_foreign_function("expr_create", Some(expr.as_bytes())) {
                Ok(Some(b)) if b.len() == 4 => {
                    self.token = Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                    proxy_wasm::hostcalls::log(LogLevel::Warn, "empty filter: CEL expression created").ok();
                }
                other => {
                    proxy_wasm::hostcalls::log(LogLevel::Error, &format!("empty filter: expr_create failed: {other:?}")).ok();
                }
            }
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(EmptyFilter { cfg: *self }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct EmptyFilter {
    cfg: EmptyRoot,
}

impl Context for EmptyFilter {}

impl HttpContext for EmptyFilter {
    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.set_http_response_header("x-bench-filter", Some("empty"));
        Action::Continue
    }

    fn on_log(&mut self) {
        for _ in 0..self.cfg.props {
            std::hint::black_box(self.get_property(vec!["response", "code"]));
        }
        if let Some(token) = self.cfg.token {
            for _ in 0..self.cfg.exprs {
                let r = proxy_wasm::hostcalls::call_foreign_function("expr_evaluate", Some(&token.to_le_bytes()));
                if !LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    proxy_wasm::hostcalls::log(LogLevel::Warn, &format!("empty filter: first expr_evaluate: {r:?}")).ok();
                }
                std::hint::black_box(r.ok());
            }
        }
        for _ in 0..self.cfg.maps {
            std::hint::black_box(self.get_http_request_headers_bytes());
        }
    }
}

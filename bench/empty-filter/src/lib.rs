//! An empty proxy-wasm HTTP filter: one root context, one HTTP context per request, one
//! `set_http_response_header` call. The floor a wasm filter cannot go below.
//!
//! Its plugin configuration can add host calls at log time, so `make bench` can price them:
//! `"props=N maps=M"` reads `response.code` N times and the request-header map M times per
//! request (rows `empty_props8`, `empty_maps2`).

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
}

impl Context for EmptyRoot {}

impl RootContext for EmptyRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = self
            .get_plugin_configuration()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        for part in text.split_whitespace() {
            let mut kv = part.splitn(2, '=');
            let (k, v) = (kv.next(), kv.next().and_then(|v| v.parse().ok()));
            match (k, v) {
                (Some("props"), Some(n)) => self.props = n,
                (Some("maps"), Some(n)) => self.maps = n,
                _ => {}
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
        for _ in 0..self.cfg.maps {
            std::hint::black_box(self.get_http_request_headers_bytes());
        }
    }
}

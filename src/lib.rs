use prost::Message;
pub fn enc() -> Vec<u8> {
    let r = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::default();
    r.encode_to_vec()
}
#[cfg(target_arch = "wasm32")]
mod w {
    use proxy_wasm::traits::*;
    use proxy_wasm::types::*;
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(R) });
    }}
    struct R;
    impl Context for R {}
    impl RootContext for R {}
}

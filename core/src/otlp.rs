//! OTLP data: building spans and attributes with the `opentelemetry-proto` types, the resource
//! and instrumentation scope this filter reports, and encoding an
//! `ExportTraceServiceRequest` as protobuf (OTLP/HTTP, `application/x-protobuf`).

use crate::config::Config;
use crate::semconv;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

pub use opentelemetry_proto::tonic::trace::v1::{
    span::Event, span::SpanKind, status::StatusCode, Span, Status,
};

/// Instrumentation scope name and `telemetry.sdk.name`.
pub const SCOPE_NAME: &str = "gateway-tracing";
/// This crate's version: scope version and `telemetry.sdk.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `user-agent` of export requests (OTLP exporter spec: identify exporter and version).
pub const USER_AGENT: &str = concat!(
    "OTel-OTLP-Exporter-Rust/",
    env!("CARGO_PKG_VERSION"),
    " gateway-tracing"
);
pub const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";

pub fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// The resource every span of this VM shares.
pub fn resource(config: &Config) -> Resource {
    let mut attributes = vec![
        kv_str(semconv::SERVICE_NAME, config.service_name.clone()),
        kv_str(semconv::TELEMETRY_SDK_NAME, SCOPE_NAME),
        kv_str(semconv::TELEMETRY_SDK_LANGUAGE, "rust"),
        kv_str(semconv::TELEMETRY_SDK_VERSION, VERSION),
    ];
    attributes.extend(
        config
            .resource_attributes
            .iter()
            .map(|(k, v)| kv_str(k, v.clone())),
    );
    Resource {
        attributes,
        ..Default::default()
    }
}

/// Encodes one export request for `spans` under `resource`.
pub fn encode(resource: &Resource, spans: Vec<Span>) -> Vec<u8> {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.into(),
                    version: VERSION.into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    req.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decodes_back() {
        let config = crate::config::parse(
            br#"{"service_name":"gw","resource_attributes":{"deployment.environment.name":"test"},"exporter":{"cluster":"otel"}}"#,
            &|_| None,
        )
        .unwrap();
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET /api/products".into(),
            kind: SpanKind::Server as i32,
            attributes: vec![kv_int(semconv::HTTP_RESPONSE_STATUS_CODE, 200)],
            ..Default::default()
        };
        let bytes = encode(&resource(&config), vec![span.clone()]);
        let back = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let rs = &back.resource_spans[0];
        let attrs = &rs.resource.as_ref().unwrap().attributes;
        let get = |k: &str| {
            attrs
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
                .and_then(|v| v.value)
        };
        assert_eq!(
            get("service.name"),
            Some(any_value::Value::StringValue("gw".into()))
        );
        assert_eq!(
            get("telemetry.sdk.name"),
            Some(any_value::Value::StringValue("gateway-tracing".into()))
        );
        assert_eq!(
            get("telemetry.sdk.language"),
            Some(any_value::Value::StringValue("rust".into()))
        );
        assert_eq!(
            get("deployment.environment.name"),
            Some(any_value::Value::StringValue("test".into()))
        );
        let scope = rs.scope_spans[0].scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            (SCOPE_NAME, VERSION)
        );
        assert_eq!(rs.scope_spans[0].spans, vec![span]);
    }
}

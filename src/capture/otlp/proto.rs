//! OTLP's protobuf messages for traces (opentelemetry-proto,
//! `opentelemetry/proto/collector/trace/v1/trace_service.proto` and the
//! `trace`, `common` and `resource` files it imports): only the fields the
//! conversion reads, with their field numbers; prost skips the others. They
//! are declared here rather than generated, since a build script and `protoc`
//! for seven messages would cost more than they save. Decoded bodies become
//! the same [`super::json`] structs the OTLP JSON reader makes, so that one
//! conversion serves both.

use super::json;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
}

/// The instrumentation library that made the spans: its name tells what its
/// spans leave out ([`super::hides_transactions`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(int32, tag = "3")]
    pub code: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    Array(ArrayValue),
    #[prost(message, tag = "6")]
    KvList(KeyValueList),
    #[prost(bytes = "vec", tag = "7")]
    Bytes(Vec<u8>),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// A protobuf body, decoded.
pub fn decode(body: &[u8]) -> Result<json::ExportTraceServiceRequest, prost::DecodeError> {
    let request = <ExportTraceServiceRequest as prost::Message>::decode(body)?;
    Ok(request.into())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl From<ExportTraceServiceRequest> for json::ExportTraceServiceRequest {
    fn from(r: ExportTraceServiceRequest) -> Self {
        json::ExportTraceServiceRequest {
            resource_spans: r.resource_spans.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<ResourceSpans> for json::ResourceSpans {
    fn from(r: ResourceSpans) -> Self {
        json::ResourceSpans {
            resource: json::Resource {
                attributes: r
                    .resource
                    .map(|res| res.attributes.into_iter().map(Into::into).collect())
                    .unwrap_or_default(),
            },
            scope_spans: r
                .scope_spans
                .into_iter()
                .map(|s| json::ScopeSpans {
                    scope: json::Scope {
                        name: s.scope.map(|scope| scope.name).unwrap_or_default(),
                    },
                    spans: s.spans.into_iter().map(Into::into).collect(),
                })
                .collect(),
        }
    }
}

impl From<Span> for json::Span {
    fn from(s: Span) -> Self {
        let status = s.status.unwrap_or_default();
        json::Span {
            trace_id: hex(&s.trace_id),
            span_id: hex(&s.span_id),
            parent_span_id: hex(&s.parent_span_id),
            name: s.name,
            start_time_unix_nano: s.start_time_unix_nano,
            end_time_unix_nano: s.end_time_unix_nano,
            attributes: s.attributes.into_iter().map(Into::into).collect(),
            status: json::Status {
                code: i64::from(status.code),
                message: status.message,
            },
        }
    }
}

impl From<KeyValue> for json::KeyValue {
    fn from(kv: KeyValue) -> Self {
        json::KeyValue {
            key: kv.key,
            value: kv.value.map(Into::into).unwrap_or_default(),
        }
    }
}

impl From<AnyValue> for json::AnyValue {
    fn from(v: AnyValue) -> Self {
        match v.value {
            None => json::AnyValue::Empty,
            Some(Value::String(s)) => json::AnyValue::String(s),
            Some(Value::Bool(b)) => json::AnyValue::Bool(b),
            Some(Value::Int(i)) => json::AnyValue::Int(i),
            Some(Value::Double(d)) => json::AnyValue::Double(d),
            Some(Value::Array(a)) => {
                json::AnyValue::Array(a.values.into_iter().map(Into::into).collect())
            }
            Some(Value::KvList(l)) => json::AnyValue::KvList(
                l.values
                    .into_iter()
                    .map(|kv| (kv.key, kv.value.map(Into::into).unwrap_or_default()))
                    .collect(),
            ),
            // The JSON mapping writes bytes as base64; kept as hex here, as
            // ids are: nothing reads a bytes attribute's text.
            Some(Value::Bytes(b)) => json::AnyValue::Bytes(hex(&b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_protobuf_body_decodes_to_the_json_structs() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(Value::String("shop".into())),
                        }),
                    }],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "opentelemetry.instrumentation.psycopg".into(),
                    }),
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
                        parent_span_id: Vec::new(),
                        name: "SELECT".into(),
                        start_time_unix_nano: 1_000,
                        end_time_unix_nano: 5_000,
                        attributes: vec![KeyValue {
                            key: "db.query.text".into(),
                            value: Some(AnyValue {
                                value: Some(Value::String("select 1".into())),
                            }),
                        }],
                        status: Some(Status {
                            message: "boom".into(),
                            code: 2,
                        }),
                    }],
                }],
            }],
        };
        let decoded = decode(&request.encode_to_vec()).expect("decodes");
        let rs = &decoded.resource_spans[0];
        assert_eq!(rs.resource.service_name(), Some("shop"));
        assert_eq!(
            rs.scope_spans[0].scope.name,
            "opentelemetry.instrumentation.psycopg"
        );
        let span = &rs.scope_spans[0].spans[0];
        assert_eq!(span.trace_id, "ab".repeat(16));
        assert_eq!(span.span_id, "0102030405060708");
        assert_eq!(span.parent_span_id, "");
        assert_eq!(span.attr_text("db.query.text").as_deref(), Some("select 1"));
        assert_eq!(
            (span.status.code, span.status.message.as_str()),
            (2, "boom")
        );
        assert!(decode(b"\xff\xff\xff").is_err());
    }
}

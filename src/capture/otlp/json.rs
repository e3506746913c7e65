//! OTLP JSON (the protobuf JSON mapping of `ExportTraceServiceRequest`, as
//! the OpenTelemetry Collector's file exporter and OTLP/HTTP JSON bodies carry
//! it), decoded into the few fields the conversion reads. Unknown fields are
//! ignored; ids are hex strings; 64-bit integers come as strings or numbers
//! (the protobuf JSON mapping writes strings, hand-written files numbers);
//! field names are lowerCamelCase, with the proto names (`resource_spans`)
//! accepted too, as protobuf's own JSON parsers do.

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// One request: a line of the file exporter's output, or one OTLP/HTTP JSON body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportTraceServiceRequest {
    #[serde(default, alias = "resource_spans")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// The spans of one resource (one service instance).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSpans {
    #[serde(default)]
    pub resource: Resource,
    #[serde(default, alias = "scope_spans")]
    pub scope_spans: Vec<ScopeSpans>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resource {
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
}

impl Resource {
    /// Its `service.name`, when it is a string.
    pub fn service_name(&self) -> Option<&str> {
        find(&self.attributes, "service.name").and_then(AnyValue::as_str)
    }
}

/// The spans of one instrumentation scope.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScopeSpans {
    #[serde(default)]
    pub scope: Scope,
    #[serde(default)]
    pub spans: Vec<Span>,
}

/// The instrumentation library that made a scope's spans.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Scope {
    #[serde(default)]
    pub name: String,
}

/// One span: the fields the conversion reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    #[serde(alias = "trace_id")]
    pub trace_id: String,
    #[serde(alias = "span_id")]
    pub span_id: String,
    /// Empty (or absent) on a trace's root span.
    #[serde(default, alias = "parent_span_id")]
    pub parent_span_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(
        default,
        alias = "start_time_unix_nano",
        deserialize_with = "int_or_string"
    )]
    pub start_time_unix_nano: u64,
    #[serde(
        default,
        alias = "end_time_unix_nano",
        deserialize_with = "int_or_string"
    )]
    pub end_time_unix_nano: u64,
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
    #[serde(default)]
    pub status: Status,
}

impl Span {
    /// The value of attribute `key`, if the span has it.
    pub fn attr(&self, key: &str) -> Option<&AnyValue> {
        find(&self.attributes, key)
    }

    /// The value of attribute `key` as text (strings as they are, numbers
    /// and booleans in their usual form).
    pub fn attr_text(&self, key: &str) -> Option<String> {
        self.attr(key).and_then(AnyValue::text)
    }
}

/// The span's status: `code` 2 (`STATUS_CODE_ERROR`) is a failure.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Status {
    #[serde(default, deserialize_with = "status_code")]
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

/// `STATUS_CODE_ERROR` as a number.
pub const STATUS_CODE_ERROR: i64 = 2;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: AnyValue,
}

/// An attribute's value.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum AnyValue {
    #[default]
    Empty,
    String(String),
    Int(i64),
    Bool(bool),
    Double(f64),
    /// Base64, as the JSON mapping writes bytes.
    Bytes(String),
    Array(Vec<AnyValue>),
    KvList(Vec<(String, AnyValue)>),
}

impl AnyValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AnyValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// Its text: strings as they are, numbers and booleans in their usual
    /// form; arrays, lists and nothing have none.
    pub fn text(&self) -> Option<String> {
        match self {
            AnyValue::String(s) | AnyValue::Bytes(s) => Some(s.clone()),
            AnyValue::Int(i) => Some(i.to_string()),
            AnyValue::Bool(b) => Some(b.to_string()),
            AnyValue::Double(d) => Some(d.to_string()),
            AnyValue::Empty | AnyValue::Array(_) | AnyValue::KvList(_) => None,
        }
    }

    /// A count: an integer, or a string or double that holds one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            AnyValue::Int(i) => u64::try_from(*i).ok(),
            AnyValue::String(s) => s.trim().parse().ok(),
            AnyValue::Double(d) if *d >= 0.0 && d.fract() == 0.0 => Some(*d as u64),
            _ => None,
        }
    }
}

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| &kv.value)
}

/// The JSON form of an AnyValue: an object with one of these fields.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAnyValue {
    #[serde(default, alias = "string_value")]
    string_value: Option<String>,
    #[serde(default, alias = "int_value", deserialize_with = "opt_int_or_string")]
    int_value: Option<i64>,
    #[serde(default, alias = "bool_value")]
    bool_value: Option<bool>,
    #[serde(default, alias = "double_value", deserialize_with = "opt_double")]
    double_value: Option<f64>,
    #[serde(default, alias = "bytes_value")]
    bytes_value: Option<String>,
    #[serde(default, alias = "array_value")]
    array_value: Option<RawArray>,
    #[serde(default, alias = "kvlist_value")]
    kvlist_value: Option<RawKvList>,
}

#[derive(Deserialize)]
struct RawArray {
    #[serde(default)]
    values: Vec<AnyValue>,
}

#[derive(Deserialize)]
struct RawKvList {
    #[serde(default)]
    values: Vec<KeyValue>,
}

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Option::<RawAnyValue>::deserialize(d)?;
        let Some(raw) = raw else {
            return Ok(AnyValue::Empty);
        };
        Ok(if let Some(s) = raw.string_value {
            AnyValue::String(s)
        } else if let Some(i) = raw.int_value {
            AnyValue::Int(i)
        } else if let Some(b) = raw.bool_value {
            AnyValue::Bool(b)
        } else if let Some(f) = raw.double_value {
            AnyValue::Double(f)
        } else if let Some(b) = raw.bytes_value {
            AnyValue::Bytes(b)
        } else if let Some(a) = raw.array_value {
            AnyValue::Array(a.values)
        } else if let Some(kv) = raw.kvlist_value {
            AnyValue::KvList(kv.values.into_iter().map(|kv| (kv.key, kv.value)).collect())
        } else {
            AnyValue::Empty
        })
    }
}

/// A 64-bit integer written as a JSON number or a string of digits.
#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Unsigned(u64),
    Signed(i64),
    Text(String),
}

fn int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match IntOrString::deserialize(d)? {
        IntOrString::Unsigned(n) => Ok(n),
        IntOrString::Signed(n) => u64::try_from(n)
            .map_err(|_| de::Error::custom(format!("{n} is not a time (nanoseconds since 1970)"))),
        IntOrString::Text(s) => s.parse().map_err(|_| {
            de::Error::custom(format!("{s:?} is not a time (nanoseconds since 1970)"))
        }),
    }
}

fn opt_int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<IntOrString>::deserialize(d)? {
        None => Ok(None),
        Some(IntOrString::Signed(n)) => Ok(Some(n)),
        Some(IntOrString::Unsigned(n)) => i64::try_from(n)
            .map(Some)
            .map_err(|_| de::Error::custom(format!("intValue {n} is out of range"))),
        Some(IntOrString::Text(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("intValue {s:?} is not an integer"))),
    }
}

/// A double: a number, or "NaN", "Infinity", "-Infinity" (or digits) as a string.
fn opt_double<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Double {
        Number(f64),
        Text(String),
    }
    match Option::<Double>::deserialize(d)? {
        None => Ok(None),
        Some(Double::Number(f)) => Ok(Some(f)),
        Some(Double::Text(s)) => match s.as_str() {
            "NaN" => Ok(Some(f64::NAN)),
            "Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            _ => s
                .parse()
                .map(Some)
                .map_err(|_| de::Error::custom(format!("doubleValue {s:?} is not a number"))),
        },
    }
}

/// A status code: its number, or its enum name (`STATUS_CODE_ERROR`).
fn status_code<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Option::<IntOrString>::deserialize(d)? {
        None => Ok(0),
        Some(IntOrString::Signed(n)) => Ok(n),
        Some(IntOrString::Unsigned(n)) => Ok(i64::try_from(n).unwrap_or(i64::MAX)),
        Some(IntOrString::Text(s)) => Ok(match s.as_str() {
            "STATUS_CODE_UNSET" => 0,
            "STATUS_CODE_OK" => 1,
            "STATUS_CODE_ERROR" => STATUS_CODE_ERROR,
            other => other.parse().map_err(|_| {
                de::Error::custom(format!(
                    "status code {other:?} is not STATUS_CODE_UNSET, _OK, _ERROR or a number"
                ))
            })?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_ids_and_int64_in_either_form() {
        let line = r#"{"resourceSpans":[{"resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"shop"}}]},
          "scopeSpans":[{"scope":{"name":"x"},"spans":[{
            "traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331",
            "parentSpanId":"","name":"SELECT","kind":3,
            "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":1700000000002500000,
            "attributes":[
              {"key":"i","value":{"intValue":"42"}},{"key":"j","value":{"intValue":7}},
              {"key":"b","value":{"boolValue":true}},{"key":"d","value":{"doubleValue":"NaN"}},
              {"key":"a","value":{"arrayValue":{"values":[{"stringValue":"x"}]}}},
              {"key":"k","value":{"kvlistValue":{"values":[{"key":"q","value":{"intValue":1}}]}}},
              {"key":"e","value":{}}],
            "status":{"code":"STATUS_CODE_ERROR","message":"boom"}}]}]}]}"#;
        let r: ExportTraceServiceRequest = serde_json::from_str(line).expect("parses");
        let rs = &r.resource_spans[0];
        assert_eq!(rs.resource.service_name(), Some("shop"));
        let s = &rs.scope_spans[0].spans[0];
        assert_eq!(s.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(s.end_time_unix_nano, 1_700_000_000_002_500_000);
        assert_eq!(s.attr("i"), Some(&AnyValue::Int(42)));
        assert_eq!(s.attr("j"), Some(&AnyValue::Int(7)));
        assert_eq!(s.attr_text("b").as_deref(), Some("true"));
        assert!(matches!(s.attr("d"), Some(AnyValue::Double(d)) if d.is_nan()));
        assert_eq!(
            s.attr("a"),
            Some(&AnyValue::Array(vec![AnyValue::String("x".into())]))
        );
        assert_eq!(
            s.attr("k"),
            Some(&AnyValue::KvList(vec![("q".into(), AnyValue::Int(1))]))
        );
        assert_eq!(s.attr("e"), Some(&AnyValue::Empty));
        assert_eq!(s.status.code, STATUS_CODE_ERROR);
        assert_eq!(s.status.message, "boom");
    }

    #[test]
    fn snake_case_names_and_numeric_status() {
        let line = r#"{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"01",
            "span_id":"02","start_time_unix_nano":5,"status":{"code":2}}]}]}]}"#;
        let r: ExportTraceServiceRequest = serde_json::from_str(line).expect("parses");
        let s = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!((s.trace_id.as_str(), s.span_id.as_str()), ("01", "02"));
        assert_eq!(s.start_time_unix_nano, 5);
        assert_eq!(s.status.code, STATUS_CODE_ERROR);
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in [
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"1","spanId":"2","startTimeUnixNano":"soon"}]}]}]}"#,
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"2"}]}]}]}"#,
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"1","spanId":"2","attributes":[{"key":"x","value":{"intValue":"x1"}}]}]}]}]}"#,
            r#"{"resourceSpans":3}"#,
        ] {
            assert!(
                serde_json::from_str::<ExportTraceServiceRequest>(bad).is_err(),
                "{bad}"
            );
        }
    }
}

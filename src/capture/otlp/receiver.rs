//! `flowaudit collect`'s OTLP/HTTP receiver: `POST /v1/traces` with a
//! protobuf (`application/x-protobuf`) or JSON (`application/json`) body,
//! gzip or not, as the OpenTelemetry Collector's `otlphttp` exporter and the
//! SDKs' OTLP/HTTP exporters send it. Each decoded request goes to the
//! auditing thread over a bounded channel; when that thread falls behind,
//! the exporter is answered 503 and retries (OTLP's back-pressure), so
//! nothing is dropped silently and memory stays bounded.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};

use super::json::ExportTraceServiceRequest;

/// The largest body taken, compressed or not: the Collector sends batches
/// of a few MB.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// Requests waiting for the auditing thread at most.
pub const QUEUE: usize = 64;

/// What the receiver answered, for the report's notes.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    pub requests: AtomicU64,
    pub spans: AtomicU64,
    /// Bodies that did not decode, or were too large (answered 400 / 413).
    pub rejected: AtomicU64,
    /// Requests answered 503 because the audit was behind (the exporter
    /// sends them again).
    pub throttled: AtomicU64,
}

impl ReceiverStats {
    pub fn notes(&self, listen: SocketAddr) -> Vec<String> {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut notes = vec![format!(
            "collect on {listen}: {} OTLP requests, {} spans",
            n(&self.requests),
            n(&self.spans)
        )];
        if n(&self.rejected) > 0 {
            notes.push(format!(
                "collect: {} requests refused (a body that was not OTLP traces, or larger than \
                 {} MB): their spans are not in this report",
                n(&self.rejected),
                MAX_BODY / 1024 / 1024
            ));
        }
        if n(&self.throttled) > 0 {
            notes.push(format!(
                "collect: {} requests answered 503 while the audit caught up (exporters send \
                 them again)",
                n(&self.throttled)
            ));
        }
        notes
    }
}

/// Serves one connection until it closes.
pub async fn serve_connection(
    stream: tokio::net::TcpStream,
    tx: SyncSender<ExportTraceServiceRequest>,
    stats: Arc<ReceiverStats>,
) {
    let service = hyper::service::service_fn(move |request| {
        let (tx, stats) = (tx.clone(), stats.clone());
        async move { Ok::<_, std::convert::Infallible>(handle(request, &tx, &stats).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

fn answer(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

async fn handle(
    request: Request<Incoming>,
    tx: &SyncSender<ExportTraceServiceRequest>,
    stats: &ReceiverStats,
) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if request.uri().path() != "/v1/traces" {
        return answer(
            StatusCode::NOT_FOUND,
            TEXT,
            "flowaudit collect receives OTLP traces at POST /v1/traces\n",
        );
    }
    if request.method() != Method::POST {
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "POST /v1/traces only\n",
        );
    }
    let header = |name: hyper::header::HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let json = header(hyper::header::CONTENT_TYPE).starts_with("application/json");
    let gzip = header(hyper::header::CONTENT_ENCODING).contains("gzip");
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                TEXT,
                format!("body not read: {e}\n"),
            );
        }
    };
    let decoded = match decode(&body, json, gzip) {
        Ok(decoded) => decoded,
        Err(why) => {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            return answer(StatusCode::BAD_REQUEST, TEXT, format!("{why}\n"));
        }
    };
    let spans: usize = decoded
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    match tx.try_send(decoded) {
        Ok(()) => {
            stats.spans.fetch_add(spans as u64, Ordering::Relaxed);
            // An empty ExportTraceServiceResponse: no partial success.
            if json {
                answer(StatusCode::OK, "application/json", "{}")
            } else {
                answer(StatusCode::OK, "application/x-protobuf", Bytes::new())
            }
        }
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            stats.throttled.fetch_add(1, Ordering::Relaxed);
            let mut response = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                "the audit is catching up; send again\n",
            );
            response.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from_static("1"),
            );
            response
        }
    }
}

/// A body as a request: gzip undone (bounded), then protobuf or JSON.
pub fn decode(body: &[u8], json: bool, gzip: bool) -> Result<ExportTraceServiceRequest, String> {
    let inflated;
    let body = if gzip {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(body)
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("gzip body: {e}"))?;
        if out.len() > MAX_BODY {
            return Err(format!(
                "gzip body inflates past {} MB",
                MAX_BODY / 1024 / 1024
            ));
        }
        inflated = out;
        &inflated[..]
    } else {
        body
    };
    if json {
        serde_json::from_slice(body).map_err(|e| format!("not an OTLP JSON request: {e}"))
    } else {
        super::proto::decode(body).map_err(|e| format!("not an OTLP protobuf request: {e}"))
    }
}

//! A real OTLP trace receiver for tests: OTLP/gRPC (the collector's
//! `TraceService`) and OTLP/HTTP (`POST /v1/traces`, protobuf) on loopback
//! ports, decoding the real protocol with the `opentelemetry-proto` types and
//! keeping everything it received, raw bytes included, so that a test can
//! check which spans and attributes arrived and that no secret did.
//!
//! Only tests use it; it costs nothing extra to build because the exporter
//! already compiles the same protocol types and tonic's server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use tokio::net::TcpListener;

/// One export request as received.
#[derive(Debug, Clone)]
pub struct ReceivedExport {
    /// `"grpc"` or `"http"`.
    pub transport: &'static str,
    /// Request headers / gRPC metadata (lower-case names).
    pub headers: BTreeMap<String, String>,
    pub request: ExportTraceServiceRequest,
    /// The request's protobuf bytes (for scanning for secrets).
    pub raw: Vec<u8>,
}

/// One span, flattened for assertions.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service_name: String,
    /// All resource attributes, values rendered as strings.
    pub resource: BTreeMap<String, String>,
    pub name: String,
    /// Attributes, values rendered as strings.
    pub attributes: BTreeMap<String, String>,
    /// Event names and their attributes.
    pub events: Vec<(String, BTreeMap<String, String>)>,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent_span_id: Vec<u8>,
}

/// Renders an attribute value the way a person reads it.
pub fn any_value_string(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attr_map(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), any_value_string(&kv.value)))
        .collect()
}

#[derive(Default)]
struct Received {
    exports: Vec<ReceivedExport>,
}

type Shared = Arc<Mutex<Received>>;

struct Grpc(Shared);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let req = request.into_inner();
        let raw = req.encode_to_vec();
        self.0.lock().unwrap().exports.push(ReceivedExport {
            transport: "grpc",
            headers,
            request: req,
            raw,
        });
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn http_export(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let req = match ExportTraceServiceRequest::decode(body.as_ref()) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    shared.lock().unwrap().exports.push(ReceivedExport {
        transport: "http",
        headers,
        request: req,
        raw: body.to_vec(),
    });
    (
        StatusCode::OK,
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse {
            partial_success: None,
        }
        .encode_to_vec(),
    )
        .into_response()
}

/// The receiver; its servers stop when it is dropped.
pub struct OtlpReceiver {
    /// OTLP/gRPC address (use `http://{grpc_addr}` as the endpoint).
    pub grpc_addr: SocketAddr,
    /// OTLP/HTTP address (use `http://{http_addr}`; spans go to `/v1/traces`).
    pub http_addr: SocketAddr,
    shared: Shared,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl OtlpReceiver {
    /// Starts both servers on free loopback ports (inside a tokio runtime).
    pub async fn start() -> std::io::Result<Self> {
        let shared: Shared = Arc::default();
        let grpc_listener = TcpListener::bind("127.0.0.1:0").await?;
        let grpc_addr = grpc_listener.local_addr()?;
        let http_listener = TcpListener::bind("127.0.0.1:0").await?;
        let http_addr = http_listener.local_addr()?;

        let svc = TraceServiceServer::new(Grpc(shared.clone()));
        let grpc = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await;
        });
        let app = axum::Router::new()
            .route("/v1/traces", post(http_export))
            .with_state(shared.clone());
        let http = tokio::spawn(async move {
            let _ = axum::serve(http_listener, app).await;
        });
        Ok(OtlpReceiver {
            grpc_addr,
            http_addr,
            shared,
            tasks: vec![grpc, http],
        })
    }

    /// The endpoint URL for a protocol (`"grpc"` or `"http/protobuf"`).
    pub fn endpoint(&self, protocol: &str) -> String {
        if protocol == "grpc" {
            format!("http://{}", self.grpc_addr)
        } else {
            format!("http://{}", self.http_addr)
        }
    }

    /// Every export received so far.
    pub fn exports(&self) -> Vec<ReceivedExport> {
        self.shared.lock().unwrap().exports.clone()
    }

    /// Every span received so far, flattened.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let mut out = Vec::new();
        for ex in self.exports() {
            for rs in &ex.request.resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| attr_map(&r.attributes))
                    .unwrap_or_default();
                let service_name = resource.get("service.name").cloned().unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push(ReceivedSpan {
                            service_name: service_name.clone(),
                            resource: resource.clone(),
                            name: s.name.clone(),
                            attributes: attr_map(&s.attributes),
                            events: s
                                .events
                                .iter()
                                .map(|e| (e.name.clone(), attr_map(&e.attributes)))
                                .collect(),
                            trace_id: s.trace_id.clone(),
                            span_id: s.span_id.clone(),
                            parent_span_id: s.parent_span_id.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Whether any received byte sequence contains `needle`.
    pub fn raw_contains(&self, needle: &str) -> bool {
        let n = needle.as_bytes();
        self.exports()
            .iter()
            .any(|e| e.raw.windows(n.len().max(1)).any(|w| w == n))
    }

    /// Waits until `pred` holds for the spans received, or `timeout` passes.
    pub async fn wait_for<F: Fn(&[ReceivedSpan]) -> bool>(
        &self,
        timeout: Duration,
        pred: F,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(&self.spans()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

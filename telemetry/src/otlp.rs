//! The OTLP trace exporter, configured by the standard environment variables.
//!
//! | variable | meaning |
//! | --- | --- |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT` | where to send; unset = no export at all |
//! | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` | `grpc` or `http/protobuf` (the default, as the specification says) |
//! | `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, `OTEL_EXPORTER_OTLP_HEADERS` | `key=value,...` sent with every export |
//! | `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, `OTEL_EXPORTER_OTLP_TIMEOUT` | milliseconds per export (default 10000) |
//! | `OTEL_SERVICE_NAME` | overrides the role's service name |
//! | `OTEL_RESOURCE_ATTRIBUTES` | extra resource attributes |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | turn export off |
//! | `OTEL_BSP_*` | batch span processor tuning |
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` the HTTP exporter appends `/v1/traces`;
//! the signal-specific `..._TRACES_ENDPOINT` is used as given.
//!
//! Export never runs on the application's threads: spans go to the SDK's
//! batch processor (a bounded queue; when it is full spans are dropped, never
//! waited for) and each batch is sent from a small dedicated tokio runtime
//! owned by the [`ExportRuntime`], so the exporter works the same from a
//! synchronous `main`, from any application runtime and during shutdown.
//! Every batch passes [`redact_span`] first: no registered secret leaves the
//! process inside a span.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::Status;
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::redact::redact;
use crate::TelemetryError;

/// The wire protocol of the exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (usually port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (usually port 4318).
    HttpProtobuf,
}

/// What the environment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    pub protocol: OtlpProtocol,
    /// The endpoint as configured (for the startup log line).
    pub endpoint: String,
    /// Which variable it came from.
    pub endpoint_var: &'static str,
    pub timeout: Duration,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Reads the exporter configuration from the environment: `Ok(None)` when
/// no endpoint is set or export is turned off, an error naming the variable
/// when a value is not understood.
pub fn config_from_env() -> Result<Option<OtlpConfig>, TelemetryError> {
    if env_nonempty("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    if let Some(v) = env_nonempty("OTEL_TRACES_EXPORTER") {
        match v.as_str() {
            "none" => return Ok(None),
            "otlp" => {}
            other => {
                return Err(TelemetryError::Config {
                    var: "OTEL_TRACES_EXPORTER",
                    value: other.to_string(),
                    expected: "\"otlp\" or \"none\"",
                })
            }
        }
    }
    let (endpoint, endpoint_var) = match env_nonempty("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        Some(e) => (e, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        None => match env_nonempty("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some(e) => (e, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            None => return Ok(None),
        },
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(TelemetryError::Config {
            var: endpoint_var,
            value: endpoint,
            expected: "a URL starting with http:// or https://, e.g. http://otel-collector:4317",
        });
    }
    let (protocol_var, protocol) = match env_nonempty("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
        Some(p) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Some(p)),
        None => (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            env_nonempty("OTEL_EXPORTER_OTLP_PROTOCOL"),
        ),
    };
    let protocol = match protocol.as_deref() {
        None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
        Some("grpc") => OtlpProtocol::Grpc,
        Some(other) => {
            return Err(TelemetryError::Config {
                var: protocol_var,
                value: other.to_string(),
                expected: "\"grpc\" or \"http/protobuf\" (http/json is not supported)",
            })
        }
    };
    let (timeout_var, timeout) = match env_nonempty("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") {
        Some(t) => ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", Some(t)),
        None => (
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            env_nonempty("OTEL_EXPORTER_OTLP_TIMEOUT"),
        ),
    };
    let timeout = match timeout {
        None => Duration::from_secs(10),
        Some(t) => Duration::from_millis(t.parse::<u64>().map_err(|_| TelemetryError::Config {
            var: timeout_var,
            value: t.clone(),
            expected: "a whole number of milliseconds, e.g. 10000",
        })?),
    };
    Ok(Some(OtlpConfig {
        protocol,
        endpoint,
        endpoint_var,
        timeout,
    }))
}

/// A current-thread tokio runtime on its own thread, where export requests run.
pub(crate) struct ExportRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ExportRuntime {
    pub(crate) fn start() -> Result<Self, TelemetryError> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
            })
            .map_err(TelemetryError::Runtime)?;
        let handle = handle_rx
            .recv()
            .map_err(|_| TelemetryError::Runtime(std::io::Error::other("export thread died")))?
            .map_err(TelemetryError::Runtime)?;
        Ok(ExportRuntime {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// OTLP/HTTP transport over the workspace's reqwest (rustls, so `https://`
/// collectors work too).
#[derive(Debug)]
struct ReqwestTransport {
    client: reqwest::Client,
}

#[async_trait::async_trait]
impl HttpClient for ReqwestTransport {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let resp = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let mut out = Response::builder().status(resp.status());
        if let Some(h) = out.headers_mut() {
            *h = resp.headers().clone();
        }
        let bytes = resp.bytes().await?;
        Ok(out.body(bytes)?)
    }
}

/// Builds the OTLP exporter for `cfg`; runs inside `rt` because the gRPC
/// channel starts its connection task there.
pub(crate) fn build_exporter(
    cfg: &OtlpConfig,
    rt: &ExportRuntime,
) -> Result<RedactingExporter<opentelemetry_otlp::SpanExporter>, TelemetryError> {
    let _entered = rt.handle().enter();
    let exporter = match cfg.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_timeout(cfg.timeout)
            .build(),
        OtlpProtocol::HttpProtobuf => {
            let client = reqwest::Client::builder()
                .timeout(cfg.timeout)
                .build()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_http_client(ReqwestTransport { client })
                .with_timeout(cfg.timeout)
                .build()
        }
    }
    .map_err(|e| {
        TelemetryError::Exporter(format!("{} ({}): {e}", cfg.endpoint_var, cfg.endpoint))
    })?;
    Ok(RedactingExporter {
        inner: Arc::new(exporter),
        rt: rt.handle().clone(),
    })
}

/// Wraps the real exporter: redacts each batch, then sends it from the
/// export runtime.
#[derive(Debug)]
pub(crate) struct RedactingExporter<E> {
    inner: Arc<E>,
    rt: tokio::runtime::Handle,
}

impl<E: SpanExporter + 'static> SpanExporter for RedactingExporter<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        for span in &mut batch {
            redact_span(span);
        }
        let inner = self.inner.clone();
        match self
            .rt
            .spawn(async move { inner.export(batch).await })
            .await
        {
            Ok(r) => r,
            Err(e) => Err(OTelSdkError::InternalFailure(format!(
                "the export task failed: {e}"
            ))),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

fn redact_string_value(v: &mut StringValue) {
    if let std::borrow::Cow::Owned(s) = redact(v.as_str()) {
        *v = StringValue::from(s);
    }
}

fn redact_value(v: &mut Value) {
    match v {
        Value::String(s) => redact_string_value(s),
        Value::Array(Array::String(items)) => items.iter_mut().for_each(redact_string_value),
        _ => {}
    }
}

fn redact_attributes(attrs: &mut [KeyValue]) {
    for kv in attrs {
        redact_value(&mut kv.value);
    }
}

fn redact_cow(c: &mut std::borrow::Cow<'static, str>) {
    if let std::borrow::Cow::Owned(s) = redact(c) {
        *c = std::borrow::Cow::Owned(s);
    }
}

/// Replaces every registered secret in a span: its name, attribute values,
/// events (names and attributes), link attributes and status message.
pub fn redact_span(span: &mut SpanData) {
    if !crate::redact::has_secrets() {
        return;
    }
    redact_cow(&mut span.name);
    redact_attributes(&mut span.attributes);
    for ev in span.events.events.iter_mut() {
        redact_cow(&mut ev.name);
        redact_attributes(&mut ev.attributes);
    }
    for link in span.links.links.iter_mut() {
        redact_attributes(&mut link.attributes);
    }
    if let Status::Error { description } = &mut span.status {
        redact_cow(description);
    }
}

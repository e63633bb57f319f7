//! Observability for every moralsweep role: logs, OTLP traces, Prometheus
//! metrics, the ops endpoints, and the redaction that keeps secrets out of
//! all of them.
//!
//! A binary calls [`init`] once at startup with its role (`coordinator`,
//! `worker`, `run`, ...) and keeps the returned [`TelemetryGuard`] alive
//! until it exits; dropping the guard flushes the spans still queued.
//!
//! - Logs go to stderr (stdout stays free for `status --json` and the like),
//!   human-readable by default, one JSON object per line with
//!   `--log-format json` / `MORALSWEEP_LOG_FORMAT=json`; `RUST_LOG` filters.
//! - Spans are exported over OTLP when (and only when) an
//!   `OTEL_EXPORTER_OTLP_*` endpoint is set (see [`otlp`]). Without one no
//!   OpenTelemetry layer is installed at all, so nothing is slowed.
//! - [`metrics`] holds the Prometheus registry; [`ops`] serves it with the
//!   liveness and readiness endpoints.
//! - [`redact`] makes sure no registered secret (API keys, the worker token)
//!   appears in a log line or an exported span.
//!
//! Layer: the bottom. It depends on no workspace crate, so the coordinator,
//! the workers and the binary can all use it.

use std::io::IsTerminal;
use std::str::FromStr;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub mod access;
pub mod live;
pub mod metrics;
pub mod ops;
pub mod otlp;
pub mod propagation;
pub mod redact;
pub mod spans;

pub use metrics::Metrics;
pub use ops::{serve_ops, spawn_ops, spawn_ops_guarded, spawn_ops_with, OpsServer};

/// Errors of the telemetry setup; each names what to change.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{var}={value:?} is not understood; expected {expected}")]
    Config {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("RUST_LOG={value:?} is not a valid filter ({reason}); e.g. RUST_LOG=info or RUST_LOG=warn,moralsweep_worker=debug")]
    Filter { value: String, reason: String },
    #[error("--log-format / MORALSWEEP_LOG_FORMAT {0:?} is not understood; expected \"human\" or \"json\"")]
    LogFormat(String),
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(String),
    #[error("cannot start the OTLP export thread: {0}")]
    Runtime(std::io::Error),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInitialized,
    #[error("cannot listen for the ops endpoints on {addr}: {error}")]
    OpsBind { addr: String, error: std::io::Error },
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One readable line per event (colours on a terminal).
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = TelemetryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "human" | "text" | "pretty" | "" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(TelemetryError::LogFormat(other.to_string())),
        }
    }
}

/// The command-line flags of every subcommand that logs (flatten into the
/// top-level parser with `#[command(flatten)]`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TelemetryArgs {
    /// Log format on stderr: human or json.
    #[arg(
        long,
        global = true,
        env = "MORALSWEEP_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    pub log_format: Option<String>,
}

impl TelemetryArgs {
    /// The options these flags ask for.
    pub fn options(&self) -> Result<TelemetryOptions, TelemetryError> {
        Ok(TelemetryOptions {
            log_format: match &self.log_format {
                Some(f) => f.parse()?,
                None => LogFormat::Human,
            },
            ..TelemetryOptions::default()
        })
    }
}

/// What [`init`] sets up.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    pub log_format: LogFormat,
    /// The log filter when `RUST_LOG` is unset.
    pub default_log_filter: String,
    /// Environment variables whose values are secrets (a spec's
    /// `api_key_env` names); [`redact::DEFAULT_SECRET_ENV_VARS`] and every
    /// `*_API_KEY` / `*_TOKEN` / `*_SECRET` variable are always included.
    pub secret_env_vars: Vec<String>,
    /// Literal secret values to redact.
    pub secrets: Vec<String>,
}

impl Default for TelemetryOptions {
    fn default() -> Self {
        TelemetryOptions {
            log_format: std::env::var("MORALSWEEP_LOG_FORMAT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
            default_log_filter: "info".into(),
            secret_env_vars: Vec::new(),
            secrets: Vec::new(),
        }
    }
}

/// The filter of exported spans: `MORALSWEEP_TRACE_FILTER`, else info and
/// above, without the exporter's own transport crates (their spans would
/// feed back into the exporter).
const DEFAULT_TRACE_FILTER: &str = "info,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off,rustls=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,opentelemetry_http=off";

/// The OpenTelemetry service name of a role: `OTEL_SERVICE_NAME` if set,
/// else `moralsweep-<role>`.
pub fn service_name(role: &str) -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| format!("moralsweep-{role}"))
}

/// Keeps the exporter alive; flushes and stops it when dropped or shut down.
/// Drop it outside async code (at the end of `main`), after the runtime that
/// produced the spans has finished.
#[must_use = "dropping the guard stops the trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    runtime: Option<otlp::ExportRuntime>,
    service_name: String,
}

impl TelemetryGuard {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// The service name spans are exported under.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// Sends the spans queued so far without stopping the export.
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            if let Err(e) = p.force_flush() {
                eprintln!("warning: flushing spans failed: {e}");
            }
        }
    }

    /// Flushes the queued spans and stops the exporter.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        PROVIDER.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("warning: flushing spans at shutdown failed: {e}");
            }
        }
        // After the provider: its last export runs on this runtime.
        self.runtime.take();
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("exporting", &self.exporting())
            .field("service_name", &self.service_name)
            .finish()
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The exporting provider of this process, for [`flush`].
static PROVIDER: std::sync::Mutex<Option<SdkTracerProvider>> = std::sync::Mutex::new(None);

/// Sends the spans queued so far, from anywhere (e.g. right before a
/// `std::process::exit`, which skips the guard's drop). Spans still open are
/// not sent. A no-op when nothing is exported.
pub fn flush() {
    let p = PROVIDER.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(p) = p {
        if let Err(e) = p.force_flush() {
            eprintln!("warning: flushing spans failed: {e}");
        }
    }
}

/// Sets up logs, span export, metrics and redaction for a process of `role`.
/// Call once, before anything logs; keep the guard until exit.
pub fn init(role: &str, opts: TelemetryOptions) -> Result<TelemetryGuard, TelemetryError> {
    // Secrets first, so that not even the startup lines can carry one.
    redact::register_default_secrets();
    redact::register_env_secrets(&opts.secret_env_vars);
    for s in &opts.secrets {
        redact::register_secret(s);
    }
    metrics::init_global(role);

    let log_filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| TelemetryError::Filter {
                value: v.clone(),
                reason: e.to_string(),
            })?
        }
        _ => EnvFilter::try_new(&opts.default_log_filter).map_err(|e| TelemetryError::Filter {
            value: opts.default_log_filter.clone(),
            reason: e.to_string(),
        })?,
    };
    let writer = redact::RedactingMakeWriter::new(std::io::stderr);
    let fmt_layer: BoxedLayer = match opts.log_format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(log_filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .with_filter(log_filter)
            .boxed(),
    };
    let mut layers: Vec<BoxedLayer> = vec![fmt_layer];

    let service_name = service_name(role);
    let mut provider = None;
    let mut runtime = None;
    let otlp_cfg = otlp::config_from_env()?;
    if let Some(cfg) = &otlp_cfg {
        let rt = otlp::ExportRuntime::start()?;
        let exporter = otlp::build_exporter(cfg, &rt)?;
        let resource = Resource::builder()
            .with_service_name(service_name.clone())
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("moralsweep.role", role.to_string()),
            ])
            .build();
        let p = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = p.tracer("moralsweep");
        let trace_filter = std::env::var("MORALSWEEP_TRACE_FILTER")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_TRACE_FILTER.to_string());
        let trace_filter =
            EnvFilter::try_new(&trace_filter).map_err(|e| TelemetryError::Config {
                var: "MORALSWEEP_TRACE_FILTER",
                value: format!("{trace_filter} ({e})"),
                expected: "a tracing filter, e.g. info,moralsweep_worker=debug",
            })?;
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(trace_filter)
                .boxed(),
        );
        *PROVIDER.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
        provider = Some(p);
        runtime = Some(rt);
    }

    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialized)?;

    if let Some(cfg) = &otlp_cfg {
        tracing::info!(
            service = %service_name,
            endpoint = %cfg.endpoint,
            protocol = ?cfg.protocol,
            "exporting traces over OTLP"
        );
    }
    Ok(TelemetryGuard {
        provider,
        runtime,
        service_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_parses_and_names_the_flag_on_error() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("HUMAN".parse::<LogFormat>().unwrap(), LogFormat::Human);
        let e = "yaml".parse::<LogFormat>().unwrap_err().to_string();
        assert!(e.contains("--log-format") && e.contains("json"), "{e}");
    }
}

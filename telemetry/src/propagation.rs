//! W3C trace context (`traceparent`) across process boundaries, so that one
//! lease is one trace from the coordinator through the worker to the
//! provider and back:
//!
//! ```text
//! coordinator  lease (grants the slots; a root, linked to the sweep's submit span)
//!  └ worker    lease (the worker's handling of the granted slots)
//!     └ worker model (one grant: the slots of one model)
//!        ├ worker provider_call  ──traceparent header──> the provider (and `moralsweep sim`)
//!        └ coordinator report (the results of those slots)
//! ```
//!
//! The coordinator returns its `lease` span's context in the `traceparent`
//! metadata of the Lease reply; the worker's `lease` span takes it as its
//! parent ([`set_parent`]); every provider HTTP request carries the context
//! of its `provider_call` span ([`current_traceparent`]); the Report request
//! carries the worker's `model` span context in its metadata, and the
//! coordinator's `report` span takes it as parent.
//!
//! Without an OTLP exporter there is no OpenTelemetry layer: spans have no
//! trace context, nothing is propagated and nothing is parsed.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header / gRPC metadata key of W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of a span, when it has a trace context (spans are
/// exported). Starts the span's OpenTelemetry side: set a span's parent
/// ([`set_parent`]) before asking for its context.
pub fn traceparent_of(span: &Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The `traceparent` of the current span (see [`traceparent_of`]).
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// The remote span context a `traceparent` names, if it is valid.
fn remote(traceparent: &str) -> Option<opentelemetry::Context> {
    let mut carrier: HashMap<String, String> = HashMap::new();
    carrier.insert(TRACEPARENT.to_string(), traceparent.trim().to_string());
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes the remote span a `traceparent` names the parent of `span`. Call it
/// right after creating `span`, before it is entered. Returns whether it
/// took (false for a malformed value, a span that is not exported, or one
/// already started).
pub fn set_parent(span: &Span, traceparent: &str) -> bool {
    match remote(traceparent) {
        Some(cx) => span.set_parent(cx).is_ok(),
        None => false,
    }
}

/// Links `span` to the remote span a `traceparent` names (a follows-from
/// relation across traces, e.g. a lease to the sweep submission it serves).
/// Call it before the span is entered.
pub fn add_link(span: &Span, traceparent: &str) {
    if let Some(cx) = remote(traceparent) {
        span.add_link(cx.span().span_context().clone());
    }
}

/// The `traceparent` of a gRPC request's or reply's metadata.
pub fn from_metadata(md: &tonic::metadata::MetadataMap) -> Option<String> {
    md.get(TRACEPARENT)?.to_str().ok().map(str::to_string)
}

/// Puts `span`'s `traceparent` into gRPC metadata (nothing when the span
/// has no trace context).
pub fn inject_metadata(span: &Span, md: &mut tonic::metadata::MetadataMap) {
    if let Some(tp) = traceparent_of(span) {
        if let Ok(v) = tp.parse() {
            md.insert(TRACEPARENT, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// Keeps the finished spans.
    #[derive(Debug, Clone, Default)]
    struct Keep(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Keep {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    #[test]
    fn a_remote_parent_and_the_context_sent_on() {
        let exporter = Keep::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")));
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sent = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("lease");
            assert!(set_parent(&span, parent));
            assert!(!set_parent(&span, "not a traceparent"));
            let child = span.in_scope(|| tracing::info_span!("provider_call"));
            child.in_scope(current_traceparent).unwrap()
        });
        assert!(
            sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{sent}"
        );
        assert!(!sent.contains("00f067aa0ba902b7"), "{sent}");
        let _ = provider.force_flush();
        let spans = exporter.0.lock().unwrap().clone();
        let lease = spans.iter().find(|s| s.name == "lease").unwrap();
        let call = spans.iter().find(|s| s.name == "provider_call").unwrap();
        assert_eq!(
            lease.parent_span_id.to_string(),
            "00f067aa0ba902b7",
            "the remote span is the lease's parent"
        );
        assert_eq!(call.parent_span_id, lease.span_context.span_id());
        assert!(sent.contains(&call.span_context.span_id().to_string()));
        // No exporter, no context: nothing to propagate.
        assert_eq!(current_traceparent(), None);
    }
}

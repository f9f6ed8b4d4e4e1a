//! The optional OpenTelemetry trace exporter (cargo feature `otlp`): `warden run`'s spans —
//! one per gateway call (`mcp.call`) and per probe (`mcp.probe`), target `warden::trace` — go
//! over OTLP/HTTP (protobuf) to a collector, as service `warden`.
//!
//! On when `--otlp-endpoint` (a base URL; `/v1/traces` is appended) or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set; the other
//! `OTEL_*` variables (headers, timeout, batch delay) apply as usual. Spans leave in batches
//! from the SDK's own thread, with a blocking client, never from the async runtime.

#![allow(clippy::print_stderr)]

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::{Layer, Registry};

/// The target of the spans worth exporting (shown on stderr only at `--log-level debug`).
const TRACE_TARGET: &str = "warden::trace";

/// The tracer provider, if an endpoint is configured; a bad endpoint is reported and skipped.
pub(crate) fn provider(endpoint: Option<&str>) -> Option<SdkTracerProvider> {
    let set = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    if endpoint.is_none()
        && !set("OTEL_EXPORTER_OTLP_ENDPOINT")
        && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    {
        return None;
    }
    let mut builder =
        opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary);
    if let Some(base) = endpoint {
        builder = builder.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
    }
    match builder.build() {
        Ok(exporter) => Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name("warden").build())
                .build(),
        ),
        Err(e) => {
            eprintln!("warning: no OpenTelemetry export: {e}");
            None
        }
    }
}

/// The layer that turns `warden::trace` spans into OpenTelemetry spans.
pub(crate) fn layer(provider: &SdkTracerProvider) -> Box<dyn Layer<Registry> + Send + Sync> {
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("warden"))
        .with_filter(Targets::new().with_target(TRACE_TARGET, tracing::Level::DEBUG))
        .boxed()
}

//! Request counters and latencies at the API edge, in one Prometheus registry.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tonic::Code;

pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    failures: IntCounterVec,
    latency: HistogramVec,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new("berth_cri_requests_total", "CRI requests served, by method"),
        &["method"],
    )
    .expect("valid metric");
    let failures = IntCounterVec::new(
        Opts::new(
            "berth_cri_request_failures_total",
            "CRI requests that failed, by method and gRPC code",
        ),
        &["method", "code"],
    )
    .expect("valid metric");
    let latency = HistogramVec::new(
        HistogramOpts::new("berth_cri_request_duration_seconds", "CRI request latency, by method").buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
        ]),
        &["method"],
    )
    .expect("valid metric");
    for c in [
        Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(failures.clone()),
        Box::new(latency.clone()),
    ] {
        registry.register(c).expect("metric registered once");
    }
    Metrics {
        registry,
        requests,
        failures,
        latency,
    }
});

/// Record one finished request.
pub fn observe(method: &'static str, elapsed: Duration, failure: Option<Code>) {
    let m = &*METRICS;
    m.requests.with_label_values(&[method]).inc();
    m.latency.with_label_values(&[method]).observe(elapsed.as_secs_f64());
    if let Some(code) = failure {
        m.failures.with_label_values(&[method, &format!("{code:?}")]).inc();
    }
}

/// The registry in Prometheus text format.
pub fn render() -> String {
    let families = METRICS.registry.gather();
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .unwrap_or_default()
}

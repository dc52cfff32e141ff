//! Request counters and latencies at the API edge, in one Prometheus registry.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use tonic::Code;

pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    failures: IntCounterVec,
    latency: HistogramVec,
    streaming_refused: IntCounterVec,
    streaming_sessions: IntGaugeVec,
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
    let streaming_refused = IntCounterVec::new(
        Opts::new(
            "berth_streaming_refused_total",
            "Streaming requests refused before a session started, by reason",
        ),
        &["reason"],
    )
    .expect("valid metric");
    let streaming_sessions = IntGaugeVec::new(
        Opts::new("berth_streaming_sessions", "Streaming sessions running, by kind"),
        &["kind"],
    )
    .expect("valid metric");
    for c in [
        Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(failures.clone()),
        Box::new(latency.clone()),
        Box::new(streaming_refused.clone()),
        Box::new(streaming_sessions.clone()),
    ] {
        registry.register(c).expect("metric registered once");
    }
    Metrics {
        registry,
        requests,
        failures,
        latency,
        streaming_refused,
        streaming_sessions,
    }
});

/// A streaming request refused (unknown token, too many sessions, …).
pub fn streaming_refused(reason: &'static str) {
    METRICS.streaming_refused.with_label_values(&[reason]).inc();
}

/// A running streaming session of `kind` (exec, attach, portforward);
/// counted until the guard is dropped.
pub fn streaming_session(kind: &'static str) -> SessionGauge {
    let gauge = METRICS.streaming_sessions.with_label_values(&[kind]);
    gauge.inc();
    SessionGauge(gauge)
}

/// Decrements the session gauge when dropped.
pub struct SessionGauge(prometheus::IntGauge);

impl Drop for SessionGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

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

//! Prometheus metrics of the node, served at `GET /metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// All metrics of one node (one registry per node, so tests can run several).
pub struct Metrics {
    registry: Registry,
    /// Associations currently open.
    pub associations_open: IntGauge,
    /// Associations rejected, by reason.
    pub associations_rejected: IntCounterVec,
    /// Instances newly stored (duplicates not counted).
    pub instances_stored: IntCounter,
    /// Bytes of newly stored instances.
    pub bytes_stored: IntCounter,
    /// Seconds from a complete spool file to a committed index row.
    pub ingest_seconds: Histogram,
    /// DIMSE responses with a non-success status, by status (hex).
    pub dimse_failures: IntCounterVec,
    /// Ingest rejections and failures, by stable error code.
    pub ingest_failures: IntCounterVec,
    /// AI jobs queued (refreshed by the job scanner).
    pub ai_jobs_queued: IntGauge,
    /// AI jobs finished, by final state of the attempt.
    pub ai_jobs_finished: IntCounterVec,
    /// Seconds per AI job attempt, by outcome.
    pub ai_job_seconds: prometheus::HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("glia".into()), None).expect("registry");
        let associations_open = IntGauge::new(
            "dimse_associations_open",
            "DIMSE associations currently open",
        )
        .unwrap();
        let associations_rejected = IntCounterVec::new(
            Opts::new(
                "dimse_associations_rejected_total",
                "Associations rejected, by reason",
            ),
            &["reason"],
        )
        .unwrap();
        let instances_stored =
            IntCounter::new("instances_stored_total", "Instances newly stored").unwrap();
        let bytes_stored =
            IntCounter::new("bytes_stored_total", "Bytes of newly stored instances").unwrap();
        let ingest_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "ingest_seconds",
                "Spool-to-index latency of the ingest path",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
        )
        .unwrap();
        let dimse_failures = IntCounterVec::new(
            Opts::new(
                "dimse_failures_total",
                "DIMSE responses with a failure status",
            ),
            &["status"],
        )
        .unwrap();
        let ingest_failures = IntCounterVec::new(
            Opts::new(
                "ingest_failures_total",
                "Instances rejected or failed, by error code",
            ),
            &["code"],
        )
        .unwrap();
        let ai_jobs_queued =
            IntGauge::new("ai_jobs_queued", "AI jobs waiting in the queue").unwrap();
        let ai_jobs_finished = IntCounterVec::new(
            Opts::new(
                "ai_jobs_finished_total",
                "AI job attempts finished, by outcome",
            ),
            &["outcome"],
        )
        .unwrap();
        let ai_job_seconds = prometheus::HistogramVec::new(
            HistogramOpts::new("ai_job_seconds", "Duration of AI job attempts").buckets(vec![
                0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
            ]),
            &["outcome"],
        )
        .unwrap();
        for c in [
            Box::new(associations_open.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(associations_rejected.clone()),
            Box::new(instances_stored.clone()),
            Box::new(bytes_stored.clone()),
            Box::new(ingest_seconds.clone()),
            Box::new(dimse_failures.clone()),
            Box::new(ingest_failures.clone()),
            Box::new(ai_jobs_queued.clone()),
            Box::new(ai_jobs_finished.clone()),
            Box::new(ai_job_seconds.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        Self {
            registry,
            associations_open,
            associations_rejected,
            instances_stored,
            bytes_stored,
            ingest_seconds,
            dimse_failures,
            ingest_failures,
            ai_jobs_queued,
            ai_jobs_finished,
            ai_job_seconds,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

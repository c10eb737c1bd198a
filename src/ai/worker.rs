//! The AI pipeline's background side on every node: the stable-study scanner (a
//! study with no new instance for `[ai] stable_age` seconds gets one job, whichever
//! node sees it first), the job workers (claim from the durable queue, heartbeat,
//! run [`super::run`], record the outcome) and the stale-job reaper (a job whose
//! node stopped heartbeating is retried). Every state change is logged and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::run::{self, RunError};
use super::{AiConfig, Engine};
use crate::app::AppState;
use crate::audit::{AuditEvent, Outcome, Surface};
use crate::db::jobs::{Job, JobQueue};
use crate::db::{self, DbError};

/// The job kind of a study segmentation.
pub const JOB_KIND: &str = "ai.segment";
/// `source_ae` of the instances the pipeline stores (its SEG objects).
pub const AI_SOURCE: &str = "GLIA-AI";

/// What a segmentation job was asked to do (the job's JSON payload).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct JobPayload {
    /// `stable` (detected), `api` (a user asked), `commitment` (Storage Commitment).
    pub trigger: String,
    /// Explicit series choice (T1, T1ce, T2, FLAIR Series Instance UIDs), overriding
    /// series selection.
    pub series: Option<ExplicitSeries>,
}

/// The four input series chosen by a user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExplicitSeries {
    pub t1: String,
    pub t1ce: String,
    pub t2: String,
    pub flair: String,
}

/// The loaded model, or why it could not be loaded (jobs then fail with that reason
/// and the node keeps serving everything else).
pub type LoadedEngine = Result<Arc<ModelHandle>, String>;

/// A loaded engine with the name and version recorded in results.
pub struct ModelHandle {
    pub engine: Engine,
    pub name: String,
    pub version: String,
}

/// Load the configured model (blocking work on a blocking thread).
pub async fn load_model(cfg: &AiConfig) -> LoadedEngine {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let engine = Engine::load(&cfg).map_err(|e| e.to_string())?;
        let name = cfg
            .weights
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "segresnet".into());
        let version = std::fs::read(&cfg.weights)
            .map(|b| {
                use sha2::Digest;
                hex::encode(&sha2::Sha256::digest(&b)[..6])
            })
            .unwrap_or_else(|_| "unknown".into());
        Ok(Arc::new(ModelHandle {
            engine,
            name,
            version,
        }))
    })
    .await
    .unwrap_or_else(|e| Err(format!("model loader panicked: {e}")))
}

/// Everything a job needs, shared by the scanner and the workers of one node.
pub struct AiRuntime {
    pub state: AppState,
    pub model: LoadedEngine,
}

impl AiRuntime {
    fn cfg(&self) -> &AiConfig {
        &self.state.config.ai
    }

    fn queue(&self) -> &JobQueue {
        &self.state.jobs
    }
}

/// Queue a segmentation of `study_uid` now (API, Storage Commitment). `None` when a
/// job for the study is already queued or running.
pub async fn enqueue_study(
    state: &AppState,
    study_uid: &str,
    payload: &JobPayload,
) -> Result<Option<i64>, DbError> {
    let body = serde_json::to_string(payload).unwrap_or_else(|_| "{}".into());
    let id = state
        .jobs
        .enqueue(JOB_KIND, study_uid, &body, state.config.ai.max_attempts)
        .await?;
    if let Some(id) = id {
        tracing::info!(job = id, trigger = %payload.trigger, "AI job queued");
        state.ai_wake.notify_waiters();
    }
    Ok(id)
}

/// An explicit "these studies are complete" signal (Storage Commitment): each study
/// not yet handed to the pipeline for its latest instance gets its job now instead
/// of after `stable_age` (the same compare-and-set as the scanner, so never twice).
#[derive(Clone)]
pub struct AiTrigger {
    state: Option<AppState>,
}

impl AiTrigger {
    /// A trigger for `state`'s node; inert when the pipeline is disabled.
    pub fn new(state: &AppState) -> Self {
        Self {
            state: state.config.ai.enabled.then(|| state.clone()),
        }
    }

    /// A trigger that does nothing.
    pub fn disabled() -> Self {
        Self { state: None }
    }

    /// Queue the studies of these SOP instances now. Errors are logged, not returned:
    /// the scanner picks the studies up anyway once they are stable.
    pub async fn studies_complete(&self, sop_instance_uids: &[String]) {
        let Some(state) = &self.state else { return };
        let conn = state.repo.connection();
        let studies = match db::ai::studies_of_instances(conn, sop_instance_uids).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "AI trigger: studies of committed instances unknown");
                return;
            }
        };
        let payload = serde_json::to_string(&JobPayload {
            trigger: "commitment".into(),
            series: None,
        })
        .unwrap_or_default();
        for uid in studies {
            let claimed = match db::ai::pending_study(conn, &uid).await {
                Ok(Some(s)) => {
                    db::ai::claim_stable(
                        conn,
                        &s,
                        Some((JOB_KIND, payload.as_str(), state.config.ai.max_attempts)),
                    )
                    .await
                }
                Ok(None) => continue,
                Err(e) => Err(e),
            };
            match claimed {
                Ok(Some(Some(id))) => {
                    tracing::info!(
                        job = id,
                        "study complete (storage commitment); AI job queued"
                    );
                    state.ai_wake.notify_waiters();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "AI trigger failed"),
            }
        }
    }
}

/// Start the scanner, the reaper and `[ai] workers` workers. Jobs this node was
/// running when it last stopped are queued again first.
pub async fn start(
    state: AppState,
    model: LoadedEngine,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    match state.jobs.requeue_own().await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            jobs = n,
            "AI jobs interrupted by the last stop queued again"
        ),
        Err(e) => tracing::error!(error = %e, "cannot requeue interrupted AI jobs"),
    }
    let rt = Arc::new(AiRuntime { state, model });
    let mut tasks = vec![
        tokio::spawn(scanner(rt.clone(), shutdown.clone())),
        tokio::spawn(reaper(rt.clone(), shutdown.clone())),
    ];
    for n in 0..rt.cfg().workers.max(1) {
        tasks.push(tokio::spawn(worker(rt.clone(), n, shutdown.clone())));
    }
    tasks
}

/// Find stable studies and queue one job for each (compare-and-set per study, so
/// nodes sharing the database never queue the same burst twice).
async fn scanner(rt: Arc<AiRuntime>, shutdown: CancellationToken) {
    let every = Duration::from_millis(rt.cfg().scan_interval_ms.max(50));
    loop {
        if let Err(e) = scan_once(&rt).await {
            tracing::warn!(error = %e, "stable-study scan failed");
        }
        if let Ok(n) = rt.queue().queued(JOB_KIND).await {
            rt.state.metrics.ai_jobs_queued.set(n as i64);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn scan_once(rt: &AiRuntime) -> Result<(), DbError> {
    let cutoff = chrono::Utc::now() - chrono::Duration::seconds(rt.cfg().stable_age as i64);
    let payload = serde_json::to_string(&JobPayload {
        trigger: "stable".into(),
        series: None,
    })
    .unwrap_or_default();
    for s in db::ai::stable_studies(rt.state.repo.connection(), cutoff, 100).await? {
        let queue_it = !s.checked_before || rt.cfg().retrigger_on_late_instance;
        let job = queue_it.then_some((JOB_KIND, payload.as_str(), rt.cfg().max_attempts));
        match db::ai::claim_stable(rt.state.repo.connection(), &s, job).await? {
            Some(Some(id)) => {
                tracing::info!(
                    job = id,
                    late = s.checked_before,
                    "study stable; AI job queued"
                );
                rt.state.ai_wake.notify_waiters();
            }
            Some(None) if queue_it => {
                tracing::debug!("study stable; a job for it is already active")
            }
            _ => {}
        }
    }
    Ok(())
}

/// Put back jobs whose node stopped heartbeating.
async fn reaper(rt: Arc<AiRuntime>, shutdown: CancellationToken) {
    let timeout = Duration::from_secs(rt.cfg().heartbeat_timeout_secs.max(1));
    loop {
        match rt.queue().requeue_stale(timeout).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(jobs = n, "AI jobs without heartbeat taken back"),
            Err(e) => tracing::warn!(error = %e, "stale-job check failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep((timeout / 4).max(Duration::from_millis(250))) => {}
        }
    }
}

async fn worker(rt: Arc<AiRuntime>, n: usize, shutdown: CancellationToken) {
    let idle = Duration::from_millis(rt.cfg().scan_interval_ms.clamp(50, 2000));
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let wake = rt.state.ai_wake.notified();
        match rt.queue().claim(&[JOB_KIND]).await {
            Ok(Some(job)) => run_claimed(&rt, job, &shutdown).await,
            Ok(None) => {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = wake => {}
                    _ = tokio::time::sleep(idle) => {}
                }
            }
            Err(e) => {
                tracing::warn!(worker = n, error = %e, "claiming an AI job failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(idle) => {}
                }
            }
        }
    }
}

/// Run one claimed job with a heartbeat, then record its outcome. On shutdown the
/// job is abandoned (not failed): the next start of this node, or another node
/// after the heartbeat timeout, runs it again.
async fn run_claimed(rt: &Arc<AiRuntime>, job: Job, shutdown: &CancellationToken) {
    let started = Instant::now();
    tracing::info!(job = job.id, attempt = job.attempts, "AI job running");
    let progress = Arc::new(AtomicU64::new(0f64.to_bits()));
    let beat_stop = CancellationToken::new();
    let beat = {
        let rt = rt.clone();
        let progress = progress.clone();
        let stop = beat_stop.clone();
        let id = job.id;
        let every = Duration::from_secs(rt.cfg().heartbeat_timeout_secs.max(1)) / 4;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every.max(Duration::from_millis(200))) => {}
                }
                let p = f64::from_bits(progress.load(Ordering::Relaxed));
                if let Err(e) = rt.queue().heartbeat(id, p).await {
                    tracing::warn!(job = id, error = %e, "heartbeat failed");
                }
            }
        })
    };
    let report = {
        let progress = progress.clone();
        Arc::new(move |p: f64| progress.store(p.clamp(0.0, 100.0).to_bits(), Ordering::Relaxed))
    };
    let outcome = tokio::select! {
        r = run::run_job(rt, &job, report) => Some(r),
        _ = shutdown.cancelled() => None,
    };
    beat_stop.cancel();
    let _ = beat.await;
    let secs = started.elapsed().as_secs_f64();
    let q = rt.queue();
    let (label, res) = match outcome {
        None => {
            tracing::warn!(
                job = job.id,
                "AI job interrupted by shutdown; it will run again"
            );
            return;
        }
        Some(Ok(out)) => {
            tracing::info!(
                job = job.id,
                seconds = secs,
                result = out.result_id,
                "AI job succeeded"
            );
            ("succeeded", q.succeed(job.id).await)
        }
        Some(Err(RunError::Skip(reason))) => {
            tracing::info!(job = job.id, reason = %reason, "AI job skipped");
            ("skipped", q.skip(job.id, &reason).await)
        }
        Some(Err(RunError::Fail(reason))) => {
            tracing::warn!(job = job.id, reason = %reason, "AI job attempt failed");
            ("failed", q.fail(job.id, &reason).await)
        }
    };
    rt.state
        .metrics
        .ai_jobs_finished
        .with_label_values(&[label])
        .inc();
    rt.state
        .metrics
        .ai_job_seconds
        .with_label_values(&[label])
        .observe(secs);
    match res {
        Ok(true) => {}
        Ok(false) => tracing::warn!(job = job.id, "AI job was taken over before it finished"),
        Err(e) => tracing::error!(job = job.id, error = %e, "recording the AI job outcome failed"),
    }
    rt.state
        .audit
        .record(
            AuditEvent::new(Surface::Internal, "ai.segment")
                .system("ai-worker")
                .study(Some(&job.key))
                .outcome(
                    if label == "succeeded" {
                        Outcome::Success
                    } else {
                        Outcome::Failure
                    },
                    None,
                )
                .detail(format!("job {} {label}", job.id)),
        )
        .await;
}

//! `/api/ai/...`: the AI pipeline's jobs and results. List and inspect jobs, read a
//! study's results (measurements, SEG series, preliminary report), queue a rerun
//! (optionally with the four series chosen by hand), run and wait for the result,
//! and verify a preliminary report.

use std::time::{Duration, Instant};

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use crate::ai::worker::{self, ExplicitSeries, JobPayload, JOB_KIND};
use crate::app::AppState;
use crate::db::ai::AiResultRow;
use crate::db::jobs::{Job, JobState};
use crate::db::{self, DbError};

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum JobStateDto {
    Queued,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

impl From<JobState> for JobStateDto {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Queued => JobStateDto::Queued,
            JobState::Running => JobStateDto::Running,
            JobState::Succeeded => JobStateDto::Succeeded,
            JobState::Failed => JobStateDto::Failed,
            JobState::Skipped => JobStateDto::Skipped,
        }
    }
}

impl From<JobStateDto> for JobState {
    fn from(s: JobStateDto) -> Self {
        match s {
            JobStateDto::Queued => JobState::Queued,
            JobStateDto::Running => JobState::Running,
            JobStateDto::Succeeded => JobState::Succeeded,
            JobStateDto::Failed => JobState::Failed,
            JobStateDto::Skipped => JobState::Skipped,
        }
    }
}

/// An AI job.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct JobDto {
    pub id: i64,
    /// StudyInstanceUID.
    pub study_uid: String,
    pub state: JobStateDto,
    /// Why it was skipped or failed (or the last retry's reason).
    pub reason: Option<String>,
    /// 0..100.
    pub progress: f64,
    pub attempts: i32,
    pub max_attempts: i32,
    /// `stable`, `api` or `commitment`.
    pub trigger: String,
    pub node: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Seconds from start to finish (or to now while running).
    pub duration_secs: Option<f64>,
}

impl From<Job> for JobDto {
    fn from(j: Job) -> Self {
        let payload: JobPayload = serde_json::from_str(&j.payload).unwrap_or_default();
        let duration_secs = j.started_at.map(|s| {
            let end = j.finished_at.unwrap_or_else(chrono::Utc::now);
            (end - s).num_milliseconds() as f64 / 1000.0
        });
        JobDto {
            id: j.id,
            study_uid: j.key,
            state: j.state.into(),
            reason: j.reason,
            progress: j.progress,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            trigger: payload.trigger,
            node: j.claimed_by,
            created_at: j.created_at.to_rfc3339(),
            started_at: j.started_at.map(|t| t.to_rfc3339()),
            finished_at: j.finished_at.map(|t| t.to_rfc3339()),
            duration_secs,
        }
    }
}

/// One AI result of a study.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AiResultDto {
    pub id: i64,
    pub study_uid: String,
    pub job_id: Option<i64>,
    /// `current` or `superseded`.
    pub state: String,
    /// The SEG series added to the study.
    pub seg_series_uid: String,
    pub seg_sop_instance_uid: String,
    /// The series the SEG is drawn on.
    pub reference_series_uid: String,
    /// The four input series (t1, t1ce, t2, flair).
    pub input_series: serde_json::Value,
    pub model_name: String,
    pub model_version: String,
    /// Volumes (mL), bounding box and centroid (patient LPS, mm).
    pub measurements: serde_json::Value,
    pub report: ReportDto,
    /// Seconds per stage.
    pub timings: serde_json::Value,
    /// RFC 3339.
    pub created_at: String,
    pub superseded_at: Option<String>,
}

/// The preliminary report.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ReportDto {
    /// Always true for pipeline reports.
    pub ai_generated: bool,
    /// `preliminary` (unverified) or `verified`.
    pub status: String,
    pub text: String,
    pub findings: serde_json::Value,
    pub verified_by: Option<String>,
    pub verified_at: Option<String>,
}

impl From<AiResultRow> for AiResultDto {
    fn from(r: AiResultRow) -> Self {
        let json = |s: &str| serde_json::from_str(s).unwrap_or(serde_json::Value::Null);
        AiResultDto {
            id: r.id,
            study_uid: r.study_uid,
            job_id: r.job_id,
            state: r.state,
            seg_series_uid: r.seg_series_uid,
            seg_sop_instance_uid: r.seg_sop_uid,
            reference_series_uid: r.reference_series_uid,
            input_series: json(&r.input_series),
            model_name: r.model_name,
            model_version: r.model_version,
            measurements: json(&r.measurements),
            report: ReportDto {
                ai_generated: true,
                status: r.report_status,
                text: r.report_text,
                findings: json(&r.report_findings),
                verified_by: r.verified_by,
                verified_at: r.verified_at.map(|t| t.to_rfc3339()),
            },
            timings: json(&r.timings),
            created_at: r.created_at.to_rfc3339(),
            superseded_at: r.superseded_at.map(|t| t.to_rfc3339()),
        }
    }
}

/// A rerun request.
#[derive(Debug, Object, Default)]
#[oai(skip_serializing_if_is_none)]
pub struct RunRequest {
    /// Choose the four input series instead of automatic selection.
    pub series: Option<SeriesChoice>,
}

/// Four Series Instance UIDs.
#[derive(Debug, Object, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct SeriesChoice {
    pub t1: String,
    pub t1ce: String,
    pub t2: String,
    pub flair: String,
}

/// Verification of a preliminary report.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct VerifyRequest {
    /// The report text as verified (default: unchanged).
    pub text: Option<String>,
}

/// An error body (`code` is stable and machine-readable).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AiError {
    pub code: String,
    pub message: String,
    pub detail: String,
}

fn err(code: &str, message: impl Into<String>) -> Json<AiError> {
    let message = message.into();
    Json(AiError {
        code: code.into(),
        detail: message.clone(),
        message,
    })
}

fn db_err(e: DbError) -> Json<AiError> {
    tracing::error!(error = %e, "AI API: index error");
    err("index", "the index could not be read")
}

#[derive(ApiResponse)]
pub enum JobsResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<JobDto>>),
    #[oai(status = 500)]
    Error(Json<AiError>),
}

#[derive(ApiResponse)]
pub enum JobResponse {
    #[oai(status = 200)]
    Ok(Json<JobDto>),
    #[oai(status = 404)]
    NotFound(Json<AiError>),
    #[oai(status = 500)]
    Error(Json<AiError>),
}

#[derive(ApiResponse)]
pub enum ResultsResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<AiResultDto>>),
    #[oai(status = 404)]
    NotFound(Json<AiError>),
    #[oai(status = 500)]
    Error(Json<AiError>),
}

#[derive(ApiResponse)]
pub enum RunResponse {
    /// Queued.
    #[oai(status = 202)]
    Queued(Json<JobDto>),
    /// A job for this study is already queued or running (it is returned).
    #[oai(status = 409)]
    Active(Json<JobDto>),
    #[oai(status = 404)]
    NotFound(Json<AiError>),
    #[oai(status = 500)]
    Error(Json<AiError>),
}

// A result DTO is large next to an error body, but responses are built once per
// request and moved straight into the response: boxing buys nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(ApiResponse)]
pub enum RunSyncResponse {
    /// The job succeeded: its result.
    #[oai(status = 200)]
    Done(Json<AiResultDto>),
    /// The job was skipped or failed (the job, with its reason).
    #[oai(status = 422)]
    NotDone(Json<JobDto>),
    /// Still running when the timeout expired (the job keeps running).
    #[oai(status = 504)]
    Timeout(Json<JobDto>),
    #[oai(status = 404)]
    NotFound(Json<AiError>),
    #[oai(status = 500)]
    Error(Json<AiError>),
}

#[allow(clippy::large_enum_variant)]
#[derive(ApiResponse)]
pub enum VerifyResponse {
    #[oai(status = 200)]
    Ok(Json<AiResultDto>),
    #[oai(status = 404)]
    NotFound(Json<AiError>),
    #[oai(status = 500)]
    Error(Json<AiError>),
}

/// AI jobs and results.
pub struct AiApi {
    pub state: AppState,
}

/// Longest wait of `run-sync`.
const MAX_SYNC_WAIT: u64 = 3600;

impl AiApi {
    /// Queue a job for a known study; `Err(Ok(job))` when one is already active.
    async fn queue(
        &self,
        study_uid: &str,
        series: Option<SeriesChoice>,
    ) -> Result<Result<Job, Job>, RunResponse> {
        match db::ai::study_stamp(self.state.repo.connection(), study_uid).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(RunResponse::NotFound(err("not_found", "unknown study"))),
            Err(e) => return Err(RunResponse::Error(db_err(e))),
        }
        let payload = JobPayload {
            trigger: "api".into(),
            series: series.map(|s| ExplicitSeries {
                t1: s.t1,
                t1ce: s.t1ce,
                t2: s.t2,
                flair: s.flair,
            }),
        };
        let queued = worker::enqueue_study(&self.state, study_uid, &payload)
            .await
            .map_err(|e| RunResponse::Error(db_err(e)))?;
        let find = |id: Option<i64>| async move {
            match id {
                Some(id) => self.state.jobs.get(id).await,
                None => Ok(self
                    .state
                    .jobs
                    .list(Some(JOB_KIND), None, Some(study_uid), 1)
                    .await?
                    .into_iter()
                    .next()),
            }
        };
        match find(queued).await {
            Ok(Some(job)) if queued.is_some() => Ok(Ok(job)),
            Ok(Some(job)) => Ok(Err(job)),
            Ok(None) => Err(RunResponse::Error(err("index", "the job vanished"))),
            Err(e) => Err(RunResponse::Error(db_err(e))),
        }
    }
}

#[OpenApi(prefix_path = "/ai", tag = "ApiTags::Ai")]
impl AiApi {
    /// List AI jobs, newest first.
    #[oai(path = "/jobs", method = "get")]
    async fn list_jobs(
        &self,
        _auth: crate::api::security::BearerAuth,
        /// Only jobs in this state.
        state: Query<Option<JobStateDto>>,
        /// Only jobs of this study.
        study_uid: Query<Option<String>>,
        /// At most this many (default 100, at most 1000).
        limit: Query<Option<u64>>,
    ) -> JobsResponse {
        let limit = limit.0.unwrap_or(100).clamp(1, 1000);
        match self
            .state
            .jobs
            .list(
                Some(JOB_KIND),
                state.0.map(Into::into),
                study_uid.0.as_deref(),
                limit,
            )
            .await
        {
            Ok(jobs) => JobsResponse::Ok(Json(jobs.into_iter().map(Into::into).collect())),
            Err(e) => JobsResponse::Error(db_err(e)),
        }
    }

    /// One job: state, progress, reason, timings.
    #[oai(path = "/jobs/:id", method = "get")]
    async fn get_job(&self, _auth: crate::api::security::BearerAuth, id: Path<i64>) -> JobResponse {
        match self.state.jobs.get(id.0).await {
            Ok(Some(j)) if j.kind == JOB_KIND => JobResponse::Ok(Json(j.into())),
            Ok(_) => JobResponse::NotFound(err("not_found", "no such job")),
            Err(e) => JobResponse::Error(db_err(e)),
        }
    }

    /// A study's AI results, newest first (the current one and superseded ones).
    #[oai(path = "/studies/:study_uid/results", method = "get")]
    async fn results(
        &self,
        _auth: crate::api::security::BearerAuth,
        study_uid: Path<String>,
    ) -> ResultsResponse {
        let conn = self.state.repo.connection();
        match db::ai::study_stamp(conn, &study_uid.0).await {
            Ok(Some(_)) => {}
            Ok(None) => return ResultsResponse::NotFound(err("not_found", "unknown study")),
            Err(e) => return ResultsResponse::Error(db_err(e)),
        }
        match db::ai::results_of_study(conn, &study_uid.0).await {
            Ok(rows) => ResultsResponse::Ok(Json(rows.into_iter().map(Into::into).collect())),
            Err(e) => ResultsResponse::Error(db_err(e)),
        }
    }

    /// Queue a (re)run of the pipeline on a study, optionally with the four series
    /// chosen by hand. The new result supersedes the current one.
    #[oai(path = "/studies/:study_uid/run", method = "post")]
    async fn run(
        &self,
        _auth: crate::api::security::BearerAuth,
        study_uid: Path<String>,
        body: Json<Option<RunRequest>>,
    ) -> RunResponse {
        let series = body.0.and_then(|b| b.series);
        match self.queue(&study_uid.0, series).await {
            Ok(Ok(job)) => RunResponse::Queued(Json(job.into())),
            Ok(Err(active)) => RunResponse::Active(Json(active.into())),
            Err(r) => r,
        }
    }

    /// Run the pipeline on a study and wait for the outcome (at most `timeout_secs`,
    /// default 300). An already active job for the study is waited for instead.
    #[oai(path = "/studies/:study_uid/run-sync", method = "post")]
    async fn run_sync(
        &self,
        _auth: crate::api::security::BearerAuth,
        study_uid: Path<String>,
        timeout_secs: Query<Option<u64>>,
        body: Json<Option<RunRequest>>,
    ) -> RunSyncResponse {
        let series = body.0.and_then(|b| b.series);
        let job = match self.queue(&study_uid.0, series).await {
            Ok(Ok(j)) | Ok(Err(j)) => j,
            Err(RunResponse::NotFound(e)) => return RunSyncResponse::NotFound(e),
            Err(RunResponse::Error(e)) => return RunSyncResponse::Error(e),
            Err(_) => return RunSyncResponse::Error(err("internal", "unexpected queue state")),
        };
        let deadline =
            Instant::now() + Duration::from_secs(timeout_secs.0.unwrap_or(300).min(MAX_SYNC_WAIT));
        loop {
            let current = match self.state.jobs.get(job.id).await {
                Ok(Some(j)) => j,
                Ok(None) => return RunSyncResponse::Error(err("internal", "the job vanished")),
                Err(e) => return RunSyncResponse::Error(db_err(e)),
            };
            match current.state {
                JobState::Succeeded => {
                    let rows =
                        db::ai::results_of_study(self.state.repo.connection(), &study_uid.0).await;
                    return match rows {
                        Ok(rows) => match rows.into_iter().find(|r| r.job_id == Some(job.id)) {
                            Some(r) => RunSyncResponse::Done(Json(r.into())),
                            None => RunSyncResponse::Error(err("internal", "result missing")),
                        },
                        Err(e) => RunSyncResponse::Error(db_err(e)),
                    };
                }
                JobState::Failed | JobState::Skipped => {
                    return RunSyncResponse::NotDone(Json(current.into()))
                }
                _ if Instant::now() >= deadline => {
                    return RunSyncResponse::Timeout(Json(current.into()))
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Verify a preliminary report (radiologists); optionally with an edited text.
    #[oai(path = "/results/:id/verify", method = "post")]
    async fn verify(
        &self,
        _auth: crate::api::security::BearerAuth,
        req: &Request,
        id: Path<i64>,
        body: Json<VerifyRequest>,
    ) -> VerifyResponse {
        let by = req
            .data::<crate::auth::Principal>()
            .map(|p| p.username.clone())
            .unwrap_or_else(|| "unknown".into());
        let conn = self.state.repo.connection();
        match db::ai::verify_result(conn, id.0, &by, body.0.text.as_deref()).await {
            Ok(true) => {}
            Ok(false) => return VerifyResponse::NotFound(err("not_found", "no such result")),
            Err(e) => return VerifyResponse::Error(db_err(e)),
        }
        match db::ai::result(conn, id.0).await {
            Ok(Some(r)) => VerifyResponse::Ok(Json(r.into())),
            Ok(None) => VerifyResponse::NotFound(err("not_found", "no such result")),
            Err(e) => VerifyResponse::Error(db_err(e)),
        }
    }
}

/// OpenAPI tags.
#[derive(poem_openapi::Tags)]
pub enum ApiTags {
    /// The AI pipeline: jobs and results.
    Ai,
}

//! One segmentation job, start to finish: the study's MR series → series selection
//! → the four series read from the blob store → volume assembly on the model grid →
//! inference → labels mapped back onto the reference series → DICOM SEG stored
//! through the one ingest path (as a new series of the same study) → measurements
//! and a preliminary report recorded as the study's current AI result.
//!
//! Outcomes: `Ok` (stored), [`RunError::Skip`] (the study cannot be segmented:
//! recorded with the reason, never retried) or [`RunError::Fail`] (something broke:
//! retried with backoff). The SEG's UIDs derive from the job, so a retried job that
//! had already stored its SEG stores nothing twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::assemble::{self, Assembled};
use super::dcm;
use super::report;
use super::seg::{self, SegInfo};
use super::select::{self, SeriesCandidate};
use super::worker::{AiRuntime, JobPayload, AI_SOURCE};
use super::{CancelToken, Progress};
use crate::db::jobs::Job;
use crate::db::{self, DbError};
use crate::ingest::{IngestContext, IngestError, Stored};
use crate::query::{catalog, Level, Matcher, Query, WebInstance};
use crate::store::BlobKey;

/// Why a job did not produce a result.
#[derive(Debug, Clone, PartialEq)]
pub enum RunError {
    /// The study cannot be segmented (not a brain MRI, a modality missing, bad
    /// geometry ...): final, with a human-readable reason.
    Skip(String),
    /// Something failed (storage, database, model): retried.
    Fail(String),
}

impl From<DbError> for RunError {
    fn from(e: DbError) -> Self {
        RunError::Fail(e.to_string())
    }
}

/// A stored result.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub result_id: i64,
    pub seg_series_uid: String,
}

/// Seconds spent per stage (recorded with the result; the benchmark reads them).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub select: f64,
    pub load: f64,
    pub assemble: f64,
    pub inference: f64,
    pub seg_encode: f64,
    pub store: f64,
    pub total: f64,
}

fn blocking_err(e: tokio::task::JoinError) -> RunError {
    RunError::Fail(format!("worker thread failed: {e}"))
}

/// Run the segmentation job `job` (key = StudyInstanceUID).
pub async fn run_job(
    rt: &AiRuntime,
    job: &Job,
    progress: Arc<dyn Fn(f64) + Send + Sync>,
) -> Result<RunOutput, RunError> {
    let started = Instant::now();
    let mut t = Timings::default();
    let payload: JobPayload = serde_json::from_str(&job.payload).unwrap_or_default();
    let model = rt
        .model
        .as_ref()
        .map_err(|e| RunError::Fail(format!("segmentation model not loaded: {e}")))?
        .clone();
    let cfg = &rt.state.config.ai;
    let conn = rt.state.repo.connection();
    let study_uid = job.key.as_str();
    let input_stamp = db::ai::study_stamp(conn, study_uid)
        .await?
        .ok_or_else(|| RunError::Skip("the study is no longer in the index".into()))?;

    // Series selection, from the first instance of every MR series.
    let summaries = db::ai::series_of_study(conn, study_uid).await?;
    let mr: Vec<_> = summaries
        .iter()
        .filter(|s| s.modality.as_deref() == Some("MR"))
        .collect();
    if mr.is_empty() {
        return Err(RunError::Skip(select::SkipReason::NotMr.to_string()));
    }
    let instances = study_instances(rt, study_uid).await?;
    let mut candidates = Vec::new();
    for s in &mr {
        let Some(list) = instances.get(&s.series_uid) else {
            continue;
        };
        let obj = read_object(rt, &list[0]).await?;
        let uid = s.series_uid.clone();
        let n = list.len();
        candidates.push(SeriesCandidate::from_header(&uid, n, &obj));
    }
    let selection = match &payload.series {
        Some(e) => select::select_explicit(
            &candidates,
            [
                e.t1.as_str(),
                e.t1ce.as_str(),
                e.t2.as_str(),
                e.flair.as_str(),
            ],
        ),
        None => select::select(&candidates, &cfg.selection),
    }
    .map_err(|r| RunError::Skip(r.to_string()))?;
    t.select = started.elapsed().as_secs_f64();
    progress(5.0);

    // The four series, parsed in full.
    let t_load = Instant::now();
    let mut series: Vec<Vec<FileDicomObject<InMemDicomObject>>> = Vec::with_capacity(4);
    for uid in selection.in_channel_order() {
        let list = instances.get(uid).cloned().unwrap_or_default();
        let objs: Vec<_> = futures::stream::iter(list)
            .map(|w| async move { read_object(rt, &w).await })
            .buffered(8)
            .try_collect()
            .await?;
        series.push(objs);
    }
    t.load = t_load.elapsed().as_secs_f64();
    progress(10.0);

    // Assembly on the model grid.
    let t_asm = Instant::now();
    let mut opts = cfg.assembly.clone();
    if let Some(sp) = model.engine.expected_spacing() {
        opts.spacing_mm = sp;
    }
    let assembled: Arc<Assembled> = Arc::new(
        tokio::task::spawn_blocking(move || {
            let refs: [&[FileDicomObject<InMemDicomObject>]; 4] =
                [&series[0], &series[1], &series[2], &series[3]];
            assemble::assemble(refs, &opts)
        })
        .await
        .map_err(blocking_err)?
        .map_err(|r| RunError::Skip(r.to_string()))?,
    );
    t.assemble = t_asm.elapsed().as_secs_f64();
    progress(15.0);

    // Inference.
    let t_inf = Instant::now();
    let p = progress.clone();
    let on_window = Arc::new(move |w: Progress| {
        if w.total > 0 {
            p(15.0 + 70.0 * w.done as f64 / w.total as f64);
        }
    });
    let labels = model
        .engine
        .segment_async(
            Arc::new(assembled.volume.clone()),
            on_window,
            CancelToken::new(),
        )
        .await
        .map_err(|e| match e {
            super::AiError::Input(m) | super::AiError::Config(m) => {
                RunError::Skip(format!("the assembled volume cannot be segmented: {m}"))
            }
            super::AiError::TooLarge { .. } => RunError::Skip(e.to_string()),
            other => RunError::Fail(format!("inference failed: {other}")),
        })?;
    t.inference = t_inf.elapsed().as_secs_f64();
    progress(85.0);

    // The SEG, on the reference series' own slices.
    let t_seg = Instant::now();
    let seed = seg_seed(job.id, study_uid);
    let info = SegInfo {
        series_uid: Some(dcm::seeded_uid(seed, "seg-series")),
        sop_instance_uid: Some(dcm::seeded_uid(seed, "seg-instance")),
        series_number: cfg.seg_series_number,
        algorithm_name: model.name.clone(),
        algorithm_version: model.version.clone(),
        ..SegInfo::default()
    };
    let (bytes, measurements, info) = {
        let asm = assembled.clone();
        let labels = labels.clone();
        tokio::task::spawn_blocking(move || {
            let on_ref = assemble::labels_to_reference(&asm, &labels)?;
            let bytes = seg::build_seg(&asm.header, &on_ref, &info)?;
            let m = seg::measure(&labels, &asm.grid)?;
            Ok::<_, super::AiError>((bytes, m, info))
        })
        .await
        .map_err(blocking_err)?
        .map_err(|e| RunError::Fail(format!("SEG encoding failed: {e}")))?
    };
    t.seg_encode = t_seg.elapsed().as_secs_f64();
    progress(92.0);

    // Store through the one ingest path.
    let t_store = Instant::now();
    store_seg(rt, study_uid, &bytes).await?;
    t.store = t_store.elapsed().as_secs_f64();
    t.total = started.elapsed().as_secs_f64();

    let seg_series_uid = info.series_uid.clone().unwrap_or_default();
    let rep = report::preliminary(&measurements, &model.name, &model.version);
    let result_id = db::ai::record_result(
        conn,
        db::ai::NewResult {
            study_uid: study_uid.to_string(),
            job_id: Some(job.id),
            seg_series_uid: seg_series_uid.clone(),
            seg_sop_uid: info.sop_instance_uid.clone().unwrap_or_default(),
            reference_series_uid: assembled.reference.series_uid.clone(),
            input_series: serde_json::to_string(&selection).unwrap_or_default(),
            model_name: model.name.clone(),
            model_version: model.version.clone(),
            measurements: serde_json::to_string(&measurements).unwrap_or_default(),
            report_findings: serde_json::to_string(&rep.findings).unwrap_or_default(),
            report_text: rep.text,
            timings: serde_json::to_string(&t).unwrap_or_default(),
        },
    )
    .await?;
    db::ai::settle_after_output(conn, study_uid, input_stamp, AI_SOURCE).await?;
    tracing::info!(
        job = job.id,
        select_s = t.select,
        load_s = t.load,
        assemble_s = t.assemble,
        inference_s = t.inference,
        seg_s = t.seg_encode,
        store_s = t.store,
        "AI result stored"
    );
    Ok(RunOutput {
        result_id,
        seg_series_uid,
    })
}

/// A stable seed for the SEG's UIDs of one job (same job → same UIDs).
fn seg_seed(job_id: i64, study_uid: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("glia-seg:{job_id}:{study_uid}").as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The study's instances grouped by series (one query-model statement).
async fn study_instances(
    rt: &AiRuntime,
    study_uid: &str,
) -> Result<BTreeMap<String, Vec<WebInstance>>, RunError> {
    let mut q = Query::new(Level::Image);
    let attr = catalog::by_tag(tags::STUDY_INSTANCE_UID).expect("unique key in the catalogue");
    q.add(attr, Matcher::Single(study_uid.to_string()));
    let found = crate::query::web_instances(rt.state.repo.connection(), &q, false, false)
        .await
        .map_err(|e| RunError::Fail(e.to_string()))?;
    let mut by_series: BTreeMap<String, Vec<WebInstance>> = BTreeMap::new();
    for w in found {
        by_series
            .entry(w.series_instance_uid.clone())
            .or_default()
            .push(w);
    }
    Ok(by_series)
}

/// Read and parse one stored instance.
async fn read_object(
    rt: &AiRuntime,
    w: &WebInstance,
) -> Result<FileDicomObject<InMemDicomObject>, RunError> {
    let bytes = rt
        .state
        .store
        .get(&BlobKey(w.stored.blob_key.clone()))
        .await
        .map_err(|e| RunError::Fail(format!("reading a stored instance failed: {e}")))?;
    tokio::task::spawn_blocking(move || dcm::parse_part10(&bytes))
        .await
        .map_err(blocking_err)?
        .map_err(|e| RunError::Skip(format!("a stored instance of the study is unreadable: {e}")))
}

/// Store the SEG through the one ingest path (a duplicate — the same job retried
/// after storing it — is fine).
async fn store_seg(rt: &AiRuntime, study_uid: &str, bytes: &[u8]) -> Result<(), RunError> {
    let spool = rt.state.ingestor.spool();
    let fail = |e: std::io::Error| RunError::Fail(format!("spooling the SEG failed: {e}"));
    let mut w = spool.create().await.map_err(fail)?;
    w.write(bytes).await.map_err(fail)?;
    let file = w.finish().await.map_err(fail)?;
    let ctx = IngestContext {
        source_ae: Some(AI_SOURCE.into()),
        expected_study_instance_uid: Some(study_uid.to_string()),
        ..Default::default()
    };
    match rt.state.ingestor.ingest(file, ctx).await {
        Ok(Stored::New { .. } | Stored::Replaced { .. } | Stored::Duplicate) => Ok(()),
        Err(e @ (IngestError::Store(_) | IngestError::Index(_) | IngestError::Io(_))) => {
            Err(RunError::Fail(format!("storing the SEG failed: {e}")))
        }
        Err(e) => Err(RunError::Fail(format!(
            "the SEG was rejected by ingest: {e}"
        ))),
    }
}

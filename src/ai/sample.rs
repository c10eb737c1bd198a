//! `glia sample-data`: synthetic multimodal brain-MRI studies with tumours (the
//! phantom generator through `synth`), written as DICOM files and/or pushed to a
//! node with C-STORE, so a newcomer sees the whole loop — store, stable study,
//! segmentation, SEG back in the study — in a minute.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::synth::{synth_study, SynthOptions};
use super::AiError;
use crate::config::StorageConfig;
use crate::db::repo::StoredInstance;
use crate::dimse::client::{self, ClientOptions};
use crate::dimse::suboperations::{self, SubOpOutcome};
use crate::store::BlobStore;

/// `glia sample-data` arguments.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Write the files under this folder (one folder per study and series).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Push the studies to this DICOM node (HOST:PORT), e.g. 127.0.0.1:11112.
    #[arg(long)]
    pub push: Option<SocketAddr>,
    /// Called AE title of the node pushed to.
    #[arg(long, default_value = "GLIA")]
    pub called_ae: String,
    /// Our AE title when pushing.
    #[arg(long, default_value = "GLIA-SAMPLE")]
    pub calling_ae: String,
    /// Number of studies.
    #[arg(long, default_value_t = 1)]
    pub studies: usize,
    /// Seed of the first study (each next study uses the next seed).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// BraTS-like geometry (155 slices of 240×240 at 1 mm) instead of 64×80×80 at 2 mm.
    #[arg(long)]
    pub brats: bool,
}

/// What was produced.
#[derive(Debug, Clone, Default)]
pub struct SampleSummary {
    pub studies: usize,
    pub files: usize,
    pub pushed: usize,
    pub failed: usize,
    pub study_uids: Vec<String>,
}

/// Errors of `sample-data`.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("nothing to do: give --out DIR and/or --push HOST:PORT")]
    NoTarget,
    #[error(transparent)]
    Synth(#[from] AiError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("push: {0}")]
    Push(String),
}

/// Run `glia sample-data`.
pub async fn run(a: SampleArgs) -> Result<SampleSummary, SampleError> {
    if a.out.is_none() && a.push.is_none() {
        return Err(SampleError::NoTarget);
    }
    let mut summary = SampleSummary::default();
    for n in 0..a.studies.max(1) {
        let seed = a.seed + n as u64;
        let opts = if a.brats {
            SynthOptions::brats_like(seed)
        } else {
            SynthOptions {
                seed,
                ..SynthOptions::default()
            }
        };
        let study = tokio::task::spawn_blocking(move || synth_study(&opts))
            .await
            .map_err(|e| SampleError::Push(e.to_string()))??;
        summary.studies += 1;
        summary.study_uids.push(study.study_uid.clone());
        let files: Vec<(String, Vec<u8>)> = study
            .series
            .iter()
            .flat_map(|s| {
                s.instances.iter().enumerate().map(move |(i, b)| {
                    (
                        format!(
                            "study{:03}/{:02}-{:?}/{:04}.dcm",
                            n + 1,
                            s.series_number,
                            s.channel,
                            i + 1
                        )
                        .to_lowercase(),
                        b.clone(),
                    )
                })
            })
            .collect();
        if let Some(dir) = &a.out {
            for (rel, bytes) in &files {
                let path = dir.join(rel);
                if let Some(p) = path.parent() {
                    tokio::fs::create_dir_all(p).await?;
                }
                tokio::fs::write(&path, bytes).await?;
                summary.files += 1;
            }
        }
        if let Some(addr) = a.push {
            let (ok, failed) = push(addr, &a.called_ae, &a.calling_ae, &files).await?;
            summary.pushed += ok;
            summary.failed += failed;
        }
    }
    Ok(summary)
}

/// C-STORE `files` (Part 10 bytes) to `addr` over one association. The objects go
/// through a throw-away local blob store so the node's own SCU code sends them.
async fn push(
    addr: SocketAddr,
    called: &str,
    calling: &str,
    files: &[(String, Vec<u8>)],
) -> Result<(usize, usize), SampleError> {
    let tmp = std::env::temp_dir().join(format!("glia-sample-{}", uuid::Uuid::new_v4()));
    tokio::fs::create_dir_all(&tmp).await?;
    let result = push_via(&tmp, addr, called, calling, files).await;
    let _ = tokio::fs::remove_dir_all(&tmp).await;
    result
}

async fn push_via(
    tmp: &std::path::Path,
    addr: SocketAddr,
    called: &str,
    calling: &str,
    files: &[(String, Vec<u8>)],
) -> Result<(usize, usize), SampleError> {
    let perr = |e: &dyn std::fmt::Display| SampleError::Push(e.to_string());
    let store = BlobStore::from_config(&StorageConfig {
        url: format!("file://{}", tmp.display()),
        ..StorageConfig::default()
    })
    .map_err(|e| perr(&e))?;
    let mut instances = Vec::with_capacity(files.len());
    for (i, (_, bytes)) in files.iter().enumerate() {
        let obj = super::dcm::parse_part10(bytes)?;
        let meta = obj.meta();
        let key = crate::store::BlobKey(format!("sample/{i:06}.dcm"));
        store
            .put_bytes(&key, bytes::Bytes::from(bytes.clone()))
            .await
            .map_err(|e| perr(&e))?;
        instances.push(StoredInstance {
            sop_instance_uid: meta
                .media_storage_sop_instance_uid()
                .trim_end_matches('\0')
                .to_string(),
            sop_class_uid: meta
                .media_storage_sop_class_uid()
                .trim_end_matches('\0')
                .to_string(),
            transfer_syntax_uid: meta.transfer_syntax().trim_end_matches('\0').to_string(),
            blob_key: key.0,
            size_bytes: bytes.len() as i64,
        });
    }
    let contexts = suboperations::plan_contexts(&instances);
    let mut assoc = client::associate(addr, calling, called, &contexts, &ClientOptions::default())
        .await
        .map_err(|e| perr(&e))?;
    let accepted = assoc.contexts().to_vec();
    let (mut ok, mut failed) = (0, 0);
    for (i, inst) in instances.iter().enumerate() {
        let report = suboperations::store_instance(
            assoc.connection(),
            &accepted,
            &store,
            inst,
            (i % 65_000) as u16 + 1,
            None,
        )
        .await
        .map_err(|e| perr(&e))?;
        match report.outcome {
            SubOpOutcome::Completed | SubOpOutcome::Warning(_) => ok += 1,
            SubOpOutcome::Failed(reason) => {
                failed += 1;
                tracing::warn!(%reason, "sample instance not stored");
            }
        }
    }
    assoc.release().await.map_err(|e| perr(&e))?;
    Ok((ok, failed))
}

//! `glia import PATH...`: bulk-import files and folders through the one ingest path,
//! with a progress bar and a summary of stored / duplicate / rejected files.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::ingest::{IngestContext, Ingestor, Stored};

/// The result of an import run.
#[derive(Debug, Default)]
pub struct ImportSummary {
    pub stored: usize,
    pub duplicates: usize,
    /// (file, reason) for every file that was not stored.
    pub rejected: Vec<(PathBuf, String)>,
}

/// Every regular file below the given paths (files are taken as they are).
pub fn collect_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            for e in walkdir::WalkDir::new(p)
                .follow_links(false)
                .sort_by_file_name()
            {
                match e {
                    Ok(e) if e.file_type().is_file() => out.push(e.into_path()),
                    _ => {}
                }
            }
        } else {
            out.push(p.clone());
        }
    }
    out
}

async fn import_one(ingestor: &Ingestor, path: &Path) -> Result<Stored, String> {
    let file = ingestor
        .spool()
        .copy_from(path)
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    let ctx = IngestContext {
        source_ae: Some("IMPORT".into()),
        ..Default::default()
    };
    ingestor.ingest(file, ctx).await.map_err(|e| e.to_string())
}

/// Import `paths` with `parallel` files in flight; `show_progress` draws a bar on stderr.
pub async fn run(
    ingestor: &Ingestor,
    paths: &[PathBuf],
    parallel: usize,
    show_progress: bool,
) -> ImportSummary {
    let files = collect_files(paths);
    let bar = if show_progress {
        let b = ProgressBar::new(files.len() as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} files  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut summary = ImportSummary::default();
    let mut results = futures::stream::iter(files.into_iter().map(|f| async move {
        let r = import_one(ingestor, &f).await;
        (f, r)
    }))
    .buffer_unordered(parallel.max(1));
    while let Some((file, r)) = results.next().await {
        match r {
            Ok(Stored::New { .. } | Stored::Replaced { .. }) => summary.stored += 1,
            Ok(Stored::Duplicate) => summary.duplicates += 1,
            Err(reason) => summary.rejected.push((file, reason)),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    summary.rejected.sort();
    summary
}

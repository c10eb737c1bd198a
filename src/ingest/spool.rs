//! The spool: a local directory where an object is written while it arrives.
//!
//! A `SpoolFile` deletes itself when dropped, so an aborted association, a rejected
//! object or a failed store leaves nothing behind. Whatever a crash leaves in the
//! directory is removed by `Spool::clean` at start-up.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncWriteExt, BufWriter};

/// Our Implementation Class UID (a UUID-derived root, PS3.5 §B.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.294750401760630419480861212651787310940";
/// Our Implementation Version Name.
pub const IMPLEMENTATION_VERSION_NAME: &str = "GLIA_0_1";

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Use (and create) `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// Remove leftovers of a previous run; returns how many files were removed.
    pub fn clean(&self) -> std::io::Result<usize> {
        let mut n = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn new_path(&self) -> PathBuf {
        self.dir
            .join(format!("{}.part", uuid::Uuid::new_v4().simple()))
    }

    /// Start a new spool file for writing.
    pub async fn create(&self) -> std::io::Result<SpoolWriter> {
        let path = self.new_path();
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(SpoolWriter {
            guard: SpoolFile { path: Some(path) },
            out: BufWriter::with_capacity(256 * 1024, file),
            written: 0,
        })
    }

    /// Copy an existing file into the spool (used by `glia import`).
    pub async fn copy_from(&self, src: &Path) -> std::io::Result<SpoolFile> {
        let path = self.new_path();
        let guard = SpoolFile {
            path: Some(path.clone()),
        };
        tokio::fs::copy(src, &path).await?;
        Ok(guard)
    }
}

/// A complete object in the spool; deleted on drop.
#[derive(Debug)]
pub struct SpoolFile {
    path: Option<PathBuf>,
}

impl SpoolFile {
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("spool path present until drop")
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// An object being written into the spool.
pub struct SpoolWriter {
    guard: SpoolFile,
    out: BufWriter<tokio::fs::File>,
    written: u64,
}

impl SpoolWriter {
    /// Write the 128-byte preamble, `DICM` and a file meta group naming the
    /// transfer syntax actually negotiated.
    pub async fn write_part10_header(
        &mut self,
        sop_class_uid: &str,
        sop_instance_uid: &str,
        transfer_syntax_uid: &str,
        source_ae: Option<&str>,
    ) -> std::io::Result<()> {
        let mut b = dicom_object::meta::FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(sop_class_uid)
            .media_storage_sop_instance_uid(sop_instance_uid)
            .transfer_syntax(transfer_syntax_uid)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
        if let Some(ae) = source_ae.filter(|a| !a.is_empty()) {
            b = b.source_application_entity_title(ae);
        }
        let meta = b
            .build()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(&[0u8; 128]);
        buf.extend_from_slice(b"DICM");
        meta.write(&mut buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        self.write(&buf).await
    }

    /// Append bytes.
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.out.write_all(data).await?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flush and close; the object is complete.
    pub async fn finish(mut self) -> std::io::Result<SpoolFile> {
        // No fsync: the spool file is transient. Durability is the blob store's and
        // the index's job; both survive a killed process.
        self.out.flush().await?;
        Ok(self.guard)
    }
}

//! The spool: where an object is held while it arrives, until the ingest path has
//! stored it.
//!
//! Small objects (up to `[ingest] memory_spool_object_bytes`, while all objects in
//! memory together stay under `memory_spool_total_bytes`) are held in memory; larger
//! ones, and any object once the budget is spent, spill into a file in the spool
//! directory. A `SpoolFile` frees its memory or deletes its file when dropped, so an
//! aborted association, a rejected object or a failed store leaves nothing behind.
//! Whatever a crash leaves in the directory is removed by `Spool::clean` at start-up.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufWriter};

/// Our Implementation Class UID (a UUID-derived root, PS3.5 §B.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.294750401760630419480861212651787310940";
/// Our Implementation Version Name.
pub const IMPLEMENTATION_VERSION_NAME: &str = "GLIA_0_1";

/// How much may be held in memory.
#[derive(Debug, Clone, Copy)]
pub struct MemoryLimits {
    /// Largest object held in memory.
    pub per_object: u64,
    /// All objects in memory together.
    pub total: u64,
}

impl MemoryLimits {
    /// Everything goes to disk.
    pub const NONE: MemoryLimits = MemoryLimits {
        per_object: 0,
        total: 0,
    };
}

/// The spool: a directory, and a memory budget shared by every clone.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    limits: MemoryLimits,
    /// Bytes currently held in memory by all spool objects.
    in_memory: Arc<AtomicU64>,
}

impl Spool {
    /// Use (and create) `dir`; nothing is held in memory.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        Self::with_memory(dir, MemoryLimits::NONE)
    }

    /// Use (and create) `dir`, holding small objects in memory within `limits`.
    pub fn with_memory(dir: impl Into<PathBuf>, limits: MemoryLimits) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            limits,
            in_memory: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Bytes currently held in memory (for tests and metrics).
    pub fn bytes_in_memory(&self) -> u64 {
        self.in_memory.load(Ordering::Relaxed)
    }

    /// Take `n` more bytes of the memory budget, if it allows.
    fn reserve(&self, n: u64) -> bool {
        self.in_memory
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= self.limits.total).then_some(used + n)
            })
            .is_ok()
    }

    fn release(&self, n: u64) {
        if n > 0 {
            self.in_memory.fetch_sub(n, Ordering::AcqRel);
        }
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

    /// Start a new spool object (in memory until it outgrows the limits).
    pub async fn create(&self) -> std::io::Result<SpoolWriter> {
        Ok(SpoolWriter {
            spool: self.clone(),
            sink: Sink::Memory {
                buf: Vec::new(),
                reserved: 0,
            },
            written: 0,
        })
    }

    /// Copy an existing file into the spool (used by `glia import`).
    pub async fn copy_from(&self, src: &Path) -> std::io::Result<SpoolFile> {
        let path = self.new_path();
        let guard = SpoolFile {
            data: Data::Disk(Some(path.clone())),
        };
        tokio::fs::copy(src, &path).await?;
        Ok(guard)
    }
}

/// Where a complete object is.
#[derive(Debug)]
enum Data {
    /// In memory, holding `reserved` bytes of the spool's budget.
    Memory {
        bytes: Bytes,
        spool: Spool,
        reserved: u64,
    },
    /// In a spool file (`None` once deleted).
    Disk(Option<PathBuf>),
}

/// A complete object in the spool; its memory or file is freed on drop.
#[derive(Debug)]
pub struct SpoolFile {
    data: Data,
}

impl SpoolFile {
    /// The object's bytes, when it is held in memory.
    pub fn bytes(&self) -> Option<&Bytes> {
        match &self.data {
            Data::Memory { bytes, .. } => Some(bytes),
            Data::Disk(_) => None,
        }
    }

    /// The object's file, when it was spilled to disk.
    pub fn path(&self) -> Option<&Path> {
        match &self.data {
            Data::Memory { .. } => None,
            Data::Disk(p) => p.as_deref(),
        }
    }

    /// Its size in bytes.
    pub fn len(&self) -> std::io::Result<u64> {
        match &self.data {
            Data::Memory { bytes, .. } => Ok(bytes.len() as u64),
            Data::Disk(Some(p)) => Ok(std::fs::metadata(p)?.len()),
            Data::Disk(None) => Ok(0),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len().map(|n| n == 0).unwrap_or(true)
    }

    /// Read its first `n` bytes (or all of it when shorter).
    pub fn head(&self, n: usize) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        match &self.data {
            Data::Memory { bytes, .. } => Ok(bytes[..n.min(bytes.len())].to_vec()),
            Data::Disk(Some(p)) => {
                let mut out = Vec::with_capacity(n);
                std::fs::File::open(p)?
                    .take(n as u64)
                    .read_to_end(&mut out)?;
                Ok(out)
            }
            Data::Disk(None) => Ok(Vec::new()),
        }
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        match &mut self.data {
            Data::Memory {
                spool, reserved, ..
            } => spool.release(std::mem::take(reserved)),
            Data::Disk(p) => {
                if let Some(p) = p.take() {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
}

/// Where an object being written goes.
enum Sink {
    Memory {
        buf: Vec<u8>,
        reserved: u64,
    },
    Disk {
        guard: SpoolFile,
        out: Box<BufWriter<tokio::fs::File>>,
    },
}

/// An object being written into the spool.
pub struct SpoolWriter {
    spool: Spool,
    sink: Sink,
    written: u64,
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        if let Sink::Memory { reserved, .. } = &mut self.sink {
            self.spool.release(std::mem::take(reserved));
        }
    }
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
        let n = data.len() as u64;
        if let Sink::Memory { buf, reserved } = &mut self.sink {
            let fits = self.written + n <= self.spool.limits.per_object;
            if fits && self.spool.reserve(n) {
                *reserved += n;
                buf.extend_from_slice(data);
                self.written += n;
                return Ok(());
            }
            self.spill().await?;
        }
        if let Sink::Disk { out, .. } = &mut self.sink {
            out.write_all(data).await?;
        }
        self.written += n;
        Ok(())
    }

    /// Move what is held in memory into a new spool file; later writes go there.
    async fn spill(&mut self) -> std::io::Result<()> {
        let path = self.spool.new_path();
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        let guard = SpoolFile {
            data: Data::Disk(Some(path)),
        };
        let mut out = Box::new(BufWriter::with_capacity(256 * 1024, file));
        let held = std::mem::replace(
            &mut self.sink,
            Sink::Memory {
                buf: Vec::new(),
                reserved: 0,
            },
        );
        if let Sink::Memory { buf, reserved } = held {
            self.spool.release(reserved);
            out.write_all(&buf).await?;
        }
        self.sink = Sink::Disk { guard, out };
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Close the object: it is complete.
    pub async fn finish(mut self) -> std::io::Result<SpoolFile> {
        let sink = std::mem::replace(
            &mut self.sink,
            Sink::Memory {
                buf: Vec::new(),
                reserved: 0,
            },
        );
        match sink {
            Sink::Memory { buf, reserved } => Ok(SpoolFile {
                data: Data::Memory {
                    bytes: Bytes::from(buf),
                    spool: self.spool.clone(),
                    reserved,
                },
            }),
            // No fsync: the spool file is transient. Durability is the blob store's
            // and the index's job; both survive a killed process.
            Sink::Disk { guard, mut out } => {
                out.flush().await?;
                Ok(guard)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(per_object: u64, total: u64) -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let spool =
            Spool::with_memory(dir.path().join("spool"), MemoryLimits { per_object, total })
                .unwrap();
        (dir, spool)
    }

    fn files(spool: &Spool) -> usize {
        std::fs::read_dir(&spool.dir).unwrap().count()
    }

    #[tokio::test]
    async fn small_objects_stay_in_memory_and_are_released_on_drop() {
        let (_d, spool) = spool(1000, 10_000);
        let mut w = spool.create().await.unwrap();
        w.write(b"abc").await.unwrap();
        w.write(b"def").await.unwrap();
        assert_eq!(spool.bytes_in_memory(), 6);
        let f = w.finish().await.unwrap();
        assert_eq!(f.bytes().map(|b| &b[..]), Some(&b"abcdef"[..]));
        assert!(f.path().is_none());
        assert_eq!(f.len().unwrap(), 6);
        assert_eq!(f.head(4).unwrap(), b"abcd");
        assert_eq!(files(&spool), 0);
        drop(f);
        assert_eq!(spool.bytes_in_memory(), 0);
    }

    #[tokio::test]
    async fn an_object_over_the_per_object_limit_spills_to_a_file() {
        let (_d, spool) = spool(8, 10_000);
        let mut w = spool.create().await.unwrap();
        w.write(b"12345").await.unwrap();
        assert_eq!(spool.bytes_in_memory(), 5);
        w.write(b"6789").await.unwrap();
        // Spilled: the memory is released, everything is in the file, in order.
        assert_eq!(spool.bytes_in_memory(), 0);
        w.write(b"0").await.unwrap();
        assert_eq!(w.written(), 10);
        let f = w.finish().await.unwrap();
        assert!(f.bytes().is_none());
        let path = f.path().unwrap().to_path_buf();
        assert_eq!(std::fs::read(&path).unwrap(), b"1234567890");
        assert_eq!(f.len().unwrap(), 10);
        assert_eq!(f.head(3).unwrap(), b"123");
        drop(f);
        assert!(!path.exists());
        assert_eq!(files(&spool), 0);
    }

    #[tokio::test]
    async fn objects_spill_once_the_shared_budget_is_spent() {
        let (_d, spool) = spool(100, 10);
        let mut a = spool.create().await.unwrap();
        a.write(b"12345678").await.unwrap();
        let a = a.finish().await.unwrap();
        assert_eq!(spool.bytes_in_memory(), 8);
        // A clone shares the budget.
        let mut b = spool.clone().create().await.unwrap();
        b.write(b"abcd").await.unwrap();
        let b = b.finish().await.unwrap();
        assert!(a.bytes().is_some());
        assert!(b.path().is_some(), "over the budget: on disk");
        assert_eq!(spool.bytes_in_memory(), 8);
        drop(a);
        assert_eq!(spool.bytes_in_memory(), 0);
        // With the budget free again, the next object is held in memory.
        let mut c = spool.create().await.unwrap();
        c.write(b"abcd").await.unwrap();
        assert!(c.finish().await.unwrap().bytes().is_some());
        drop(b);
        assert_eq!(files(&spool), 0);
        assert_eq!(spool.bytes_in_memory(), 0);
    }

    #[tokio::test]
    async fn an_abandoned_writer_leaves_nothing() {
        let (_d, spool) = spool(8, 100);
        let mut w = spool.create().await.unwrap();
        w.write(b"1234").await.unwrap();
        drop(w);
        assert_eq!(spool.bytes_in_memory(), 0);
        let mut w = spool.create().await.unwrap();
        w.write(b"1234567890").await.unwrap();
        assert_eq!(files(&spool), 1);
        drop(w);
        assert_eq!(files(&spool), 0);
        // No memory at all: straight to disk.
        let dir = tempfile::tempdir().unwrap();
        let disk = Spool::new(dir.path()).unwrap();
        let mut w = disk.create().await.unwrap();
        w.write(b"x").await.unwrap();
        assert!(w.finish().await.unwrap().path().is_some());
    }
}

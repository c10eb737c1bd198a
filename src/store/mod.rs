//! The one blob abstraction: DICOM objects in object storage through `object_store`
//! (a local directory, or any S3-compatible service). It owns the key scheme.
//!
//! Key scheme (`v1`): `v1/<S>/<E>/<I>-<N>.dcm` where `S`, `E` and `I` are the first
//! 16, 16 and 32 hex digits of SHA-256 over the Study, Series and SOP Instance UIDs,
//! and `N` is a random 8-hex-digit nonce so that a replaced object never overwrites
//! the one still referenced by the index. Keys hold no raw UID and no patient data;
//! all objects of a study share a prefix (cheap listing and deletion per study).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::config::StorageConfig;

/// Objects larger than this are uploaded in parts.
const MULTIPART_THRESHOLD: u64 = 16 << 20;
const PART_SIZE: usize = 8 << 20;

/// Errors of the blob layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("object store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage configuration: {0}")]
    Config(String),
}

/// Create `dest` (and its directory) and write `bytes` into it; never overwrites.
fn write_new_file(dest: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
    };
    let mut f = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            open()?
        }
        other => other?,
    };
    f.write_all(bytes).inspect_err(|_| {
        // Nothing half-written stays behind.
        let _ = std::fs::remove_file(dest);
    })
}

/// A key in the blob store (already scheme-encoded; safe to log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobKey(pub String);

impl std::fmt::Display for BlobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The study store's blob side.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    description: String,
    /// For `file://` stores: the directory, so a spooled file can be renamed into place.
    local_root: Option<std::path::PathBuf>,
}

fn hash_hex(s: &str, digits: usize) -> String {
    let digest = Sha256::digest(s.as_bytes());
    hex::encode(digest)[..digits].to_string()
}

impl BlobStore {
    /// Open the store named by `[storage] url`.
    pub fn from_config(cfg: &StorageConfig) -> Result<Self, StoreError> {
        if let Some(dir) = cfg.url.strip_prefix("file://") {
            let dir = Path::new(dir);
            std::fs::create_dir_all(dir)?;
            let fs = LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true);
            Ok(Self {
                inner: Arc::new(fs),
                prefix: String::new(),
                description: format!("local directory {}", dir.display()),
                local_root: Some(dir.canonicalize()?),
            })
        } else if let Some(rest) = cfg.url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::Config("s3:// URL needs a bucket".into()));
            }
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(&cfg.s3.region)
                .with_allow_http(cfg.s3.allow_http);
            if !cfg.s3.endpoint.is_empty() {
                b = b.with_endpoint(&cfg.s3.endpoint);
            }
            Ok(Self {
                inner: Arc::new(b.build()?),
                prefix: prefix.trim_matches('/').to_string(),
                description: format!("S3 bucket {bucket}"),
                local_root: None,
            })
        } else {
            Err(StoreError::Config(format!(
                "storage.url must start with file:// or s3://, got {:?}",
                cfg.url
            )))
        }
    }

    /// An in-memory store (unit tests only).
    pub fn in_memory() -> Self {
        Self {
            inner: Arc::new(object_store::memory::InMemory::new()),
            prefix: String::new(),
            description: "in-memory".into(),
            local_root: None,
        }
    }

    /// Where the objects live, for the start-up log.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// A fresh key for an instance (see the module doc for the scheme).
    pub fn instance_key(&self, study_uid: &str, series_uid: &str, sop_uid: &str) -> BlobKey {
        let nonce = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let key = format!(
            "v1/{}/{}/{}-{}.dcm",
            hash_hex(study_uid, 16),
            hash_hex(series_uid, 16),
            hash_hex(sop_uid, 32),
            nonce
        );
        BlobKey(key)
    }

    fn path(&self, key: &BlobKey) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key.0.as_str())
        } else {
            ObjectPath::from(format!("{}/{}", self.prefix, key.0))
        }
    }

    /// Upload a local file under `key` (multipart when large). Atomic: readers see the
    /// whole object or nothing.
    pub async fn put_file(&self, key: &BlobKey, file: &Path) -> Result<u64, StoreError> {
        let path = self.path(key);
        let mut f = tokio::fs::File::open(file).await?;
        let len = f.metadata().await?.len();
        if len <= MULTIPART_THRESHOLD {
            let mut buf = Vec::with_capacity(len as usize);
            f.read_to_end(&mut buf).await?;
            self.inner.put(&path, PutPayload::from(buf)).await?;
        } else {
            let upload = self.inner.put_multipart(&path).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            let mut buf = vec![0u8; PART_SIZE];
            loop {
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                writer.wait_for_capacity(4).await?;
                writer.write(&buf[..n]);
            }
            writer.finish().await?;
        }
        Ok(len)
    }

    /// Store a complete local file under `key`, consuming it: on a `file://` store on
    /// the same file system it is renamed into place (atomic, no copy); otherwise it is
    /// uploaded and the file is left for its owner to delete.
    pub async fn put_file_moving(&self, key: &BlobKey, file: &Path) -> Result<u64, StoreError> {
        if let Some(root) = &self.local_root {
            let dest = root.join(&key.0);
            let len = tokio::fs::metadata(file).await?.len();
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            match tokio::fs::rename(file, &dest).await {
                Ok(()) => return Ok(len),
                // Another file system: fall back to an upload.
                Err(e) if e.raw_os_error() == Some(18) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.put_file(key, file).await
    }

    /// Store a spooled object under `key`: an object held in memory is written once
    /// (straight into its final place on a local directory: keys are never reused and
    /// readers find objects only through the index, written after this returns); a
    /// spool file is moved in or uploaded ([`BlobStore::put_file_moving`]).
    pub async fn put_spooled(
        &self,
        key: &BlobKey,
        file: &crate::ingest::SpoolFile,
    ) -> Result<u64, StoreError> {
        let Some(bytes) = file.bytes() else {
            let path = file
                .path()
                .ok_or_else(|| StoreError::Config("spool object already consumed".into()))?;
            return self.put_file_moving(key, path).await;
        };
        let len = bytes.len() as u64;
        if self.local_root.is_some() {
            let (store, key, bytes) = (self.clone(), key.clone(), bytes.clone());
            tokio::task::spawn_blocking(move || store.put_local_blocking(&key, &bytes))
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))??;
        } else {
            self.put_bytes(key, bytes.clone()).await?;
        }
        Ok(len)
    }

    /// Store `bytes` under `key` on a local directory store, synchronously (call
    /// from a blocking thread). `Ok(false)` when this store is not a local directory:
    /// use [`BlobStore::put_spooled`] then. Lets the ingest path parse an object held
    /// in memory and write it in a single blocking hop.
    pub fn put_local_blocking(&self, key: &BlobKey, bytes: &[u8]) -> Result<bool, StoreError> {
        match &self.local_root {
            Some(root) => {
                write_new_file(&root.join(&key.0), bytes)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Put bytes under `key`.
    pub async fn put_bytes(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        self.inner
            .put(&self.path(key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Read a whole object.
    pub async fn get(&self, key: &BlobKey) -> Result<Bytes, StoreError> {
        Ok(self.inner.get(&self.path(key)).await?.bytes().await?)
    }

    /// Stream an object in chunks.
    pub async fn get_stream(
        &self,
        key: &BlobKey,
    ) -> Result<impl futures::Stream<Item = Result<Bytes, StoreError>>, StoreError> {
        let res = self.inner.get(&self.path(key)).await?;
        Ok(res.into_stream().map(|r| r.map_err(StoreError::from)))
    }

    /// Read a byte range of an object.
    pub async fn get_range(
        &self,
        key: &BlobKey,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, StoreError> {
        Ok(self.inner.get_range(&self.path(key), range).await?)
    }

    /// Delete an object (missing objects are not an error).
    pub async fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Does an object exist?
    pub async fn exists(&self, key: &BlobKey) -> Result<bool, StoreError> {
        match self.inner.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Check the store is reachable (writes and deletes a probe object).
    pub async fn probe(&self) -> Result<(), StoreError> {
        let key = BlobKey(format!("probe/{}", uuid::Uuid::new_v4().simple()));
        self.put_bytes(&key, Bytes::from_static(b"glia")).await?;
        self.delete(&key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_no_uid_and_differ_per_put() {
        let s = BlobStore::in_memory();
        let a = s.instance_key("1.2.3", "1.2.3.4", "1.2.3.4.5");
        let b = s.instance_key("1.2.3", "1.2.3.4", "1.2.3.4.5");
        assert_ne!(a, b, "a replaced object must get a new key");
        assert!(!a.0.contains("1.2.3"));
        assert!(a.0.starts_with("v1/"));
        assert_eq!(a.0.split('/').count(), 4);
        assert_eq!(
            a.0.split('/').nth(1),
            b.0.split('/').nth(1),
            "same study prefix"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn put_get_delete_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x");
        std::fs::write(&file, b"hello dicom").unwrap();
        let s = BlobStore::in_memory();
        let k = s.instance_key("1", "2", "3");
        assert_eq!(s.put_file(&k, &file).await.unwrap(), 11);
        assert_eq!(&s.get(&k).await.unwrap()[..], b"hello dicom");
        assert_eq!(&s.get_range(&k, 6..11).await.unwrap()[..], b"dicom");
        s.delete(&k).await.unwrap();
        assert!(!s.exists(&k).await.unwrap());
    }
}

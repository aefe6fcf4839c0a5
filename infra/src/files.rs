//! Where uploaded files live. A small trait so that an object store can replace the local directory
//! without touching handlers or workers; names are always server-chosen (the content's sha256), so no
//! user-supplied file name ever reaches a path.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tokio::io::AsyncWriteExt;

/// A stream of upload bytes. A failing stream (a client that went away, a broken multipart body) ends
/// the upload with [`FileStoreError::Source`], carrying the stream's own error.
pub type ByteStream<'a> = BoxStream<'a, Result<Bytes, io::Error>>;

/// A stored file: its key is its sha256 (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub sha256: String,
    pub size: u64,
}

/// A stored file as a listing shows it, for garbage collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub sha256: String,
    pub size: u64,
    /// When it was stored, or last committed again (storing the same content refreshes it).
    pub modified: SystemTime,
}

/// An upload that has arrived whole but is not stored yet: it can be read (to sniff it), then
/// committed or discarded. Dropped without a commit, it is discarded; so a refused or cancelled upload
/// never leaves a file behind, and a refusal never touches a file another dataset shares.
#[derive(Debug)]
pub struct Staged {
    pub sha256: String,
    pub size: u64,
    partial: PartialFile,
}

impl Staged {
    fn path(&self) -> &Path {
        self.partial.0.as_deref().expect("a staged upload has its file until committed")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileStoreError {
    /// More than the allowed bytes arrived; nothing was kept.
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("no stored file {0}")]
    NotFound(String),
    /// Not a sha256: a key never comes from a user, so this is a bug or tampering.
    #[error("invalid file key")]
    InvalidKey,
    /// The incoming stream failed; nothing was kept.
    #[error("the upload stream failed: {0}")]
    Source(io::Error),
    /// The storage itself failed.
    #[error("file storage: {0}")]
    Io(#[from] io::Error),
}

#[async_trait::async_trait]
pub trait FileStore: Send + Sync {
    /// Receives `bytes` as they arrive (never holding the whole file), refusing more than `max_bytes`.
    async fn stage(&self, bytes: ByteStream<'_>, max_bytes: u64) -> Result<Staged, FileStoreError>;
    /// Reads a staged upload. The reader blocks: use it on a blocking thread.
    fn open_staged(&self, staged: &Staged) -> Result<Box<dyn Read + Send>, FileStoreError>;
    /// Stores a staged upload under its sha256. Storing the same content twice keeps one copy and
    /// refreshes its modification time (so a garbage collection in progress does not take it).
    async fn commit(&self, staged: Staged) -> Result<StoredBlob, FileStoreError>;
    /// Stage and commit in one go.
    async fn put(&self, bytes: ByteStream<'_>, max_bytes: u64) -> Result<StoredBlob, FileStoreError> {
        let staged = self.stage(bytes, max_bytes).await?;
        self.commit(staged).await
    }
    /// Opens a stored file for reading. The reader blocks: use it on a blocking thread.
    fn open(&self, sha256: &str) -> Result<Box<dyn Read + Send>, FileStoreError>;
    /// Removes a stored file; removing a missing one is not an error.
    async fn remove(&self, sha256: &str) -> Result<(), FileStoreError>;
    /// Every stored file.
    async fn list(&self) -> Result<Vec<BlobInfo>, FileStoreError>;
    /// Removes uploads left unfinished (by a crash) before `before`; returns how many.
    async fn remove_stale_partials(&self, before: SystemTime) -> Result<u64, FileStoreError>;
}

/// Files in a local directory: `<root>/blobs/<first two hex digits>/<sha256>`, and uploads in progress
/// under `<root>/tmp/` until their hash is known.
#[derive(Debug, Clone)]
pub struct LocalFileStore {
    root: PathBuf,
}

impl LocalFileStore {
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a stored file, for keys that are a sha256 and nothing else.
    pub fn path_of(&self, sha256: &str) -> Result<PathBuf, FileStoreError> {
        if !is_key(sha256) {
            return Err(FileStoreError::InvalidKey);
        }
        Ok(self.root.join("blobs").join(&sha256[..2]).join(sha256))
    }
}

/// Whether `name` is a key: a lower-case hex sha256.
fn is_key(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Removes an unfinished upload when dropped, also when the request is cancelled mid-stream.
#[derive(Debug)]
struct PartialFile(Option<PathBuf>);

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // A std call in Drop: there is no async drop, and unlinking one file is quick.
            let _ = std::fs::remove_file(path);
        }
    }
}

#[async_trait::async_trait]
impl FileStore for LocalFileStore {
    async fn stage(&self, mut bytes: ByteStream<'_>, max_bytes: u64) -> Result<Staged, FileStoreError> {
        let tmp = self.root.join("tmp").join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let partial = PartialFile(Some(tmp.clone()));
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(&tmp).await?);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.map_err(FileStoreError::Source)?;
            size += chunk.len() as u64;
            if size > max_bytes {
                return Err(FileStoreError::TooLarge { limit: max_bytes });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.into_inner().sync_all().await?;
        Ok(Staged { sha256: hex::encode(hasher.finalize()), size, partial })
    }

    fn open_staged(&self, staged: &Staged) -> Result<Box<dyn Read + Send>, FileStoreError> {
        Ok(Box::new(std::fs::File::open(staged.path())?))
    }

    async fn commit(&self, mut staged: Staged) -> Result<StoredBlob, FileStoreError> {
        let path = self.path_of(&staged.sha256)?;
        tokio::fs::create_dir_all(path.parent().expect("blob paths have a parent")).await?;
        // Same content already stored: keep the one copy (touched, see the trait); the staged file goes
        // when `staged` drops.
        if tokio::fs::try_exists(&path).await? {
            let touched = path.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::File::options().append(true).open(touched)?.set_modified(SystemTime::now())
            })
            .await
            .map_err(io::Error::other)??;
        } else {
            tokio::fs::rename(staged.path(), &path).await?;
            staged.partial.0 = None;
        }
        Ok(StoredBlob { sha256: staged.sha256.clone(), size: staged.size })
    }

    fn open(&self, sha256: &str) -> Result<Box<dyn Read + Send>, FileStoreError> {
        let path = self.path_of(sha256)?;
        match std::fs::File::open(path) {
            Ok(file) => Ok(Box::new(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(FileStoreError::NotFound(sha256.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove(&self, sha256: &str) -> Result<(), FileStoreError> {
        match tokio::fs::remove_file(self.path_of(sha256)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self) -> Result<Vec<BlobInfo>, FileStoreError> {
        let blobs = self.root.join("blobs");
        let listed = tokio::task::spawn_blocking(move || -> io::Result<Vec<BlobInfo>> {
            let mut found = Vec::new();
            for shard in std::fs::read_dir(blobs)? {
                let shard = shard?;
                if !shard.file_type()?.is_dir() {
                    continue;
                }
                for entry in std::fs::read_dir(shard.path())? {
                    let entry = entry?;
                    let meta = entry.metadata()?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    // Only names that are keys: anything else in the folder is not ours to judge.
                    if meta.is_file() && is_key(&name) {
                        found.push(BlobInfo { sha256: name, size: meta.len(), modified: meta.modified()? });
                    }
                }
            }
            Ok(found)
        });
        Ok(listed.await.map_err(io::Error::other)??)
    }

    async fn remove_stale_partials(&self, before: SystemTime) -> Result<u64, FileStoreError> {
        let tmp = self.root.join("tmp");
        let removed = tokio::task::spawn_blocking(move || -> io::Result<u64> {
            let mut removed = 0;
            for entry in std::fs::read_dir(tmp)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                let is_partial = entry.file_name().to_string_lossy().ends_with(".part");
                if meta.is_file() && is_partial && meta.modified()? < before {
                    std::fs::remove_file(entry.path())?;
                    removed += 1;
                }
            }
            Ok(removed)
        });
        Ok(removed.await.map_err(io::Error::other)??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> ByteStream<'static> {
        futures::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>()).boxed()
    }

    fn files_in(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[tokio::test]
    async fn a_stored_file_is_named_by_its_hash_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::new(dir.path()).unwrap();
        let blob = store.put(chunks(&[b"hello ", b"world"]), 100).await.unwrap();
        assert_eq!(blob.sha256, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        assert_eq!(blob.size, 11);
        let mut text = String::new();
        store.open(&blob.sha256).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello world");
        assert_eq!(files_in(&dir.path().join("tmp")), 0);
        let again = store.put(chunks(&[b"hello world"]), 100).await.unwrap();
        assert_eq!(again, blob);
        store.remove(&blob.sha256).await.unwrap();
        assert!(matches!(store.open(&blob.sha256), Err(FileStoreError::NotFound(_))));
    }

    #[tokio::test]
    async fn an_oversized_upload_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::new(dir.path()).unwrap();
        let refused = store.put(chunks(&[b"0123456789", b"0123456789"]), 15).await;
        assert!(matches!(refused, Err(FileStoreError::TooLarge { limit: 15 })));
        assert_eq!(files_in(&dir.path().join("tmp")), 0);
        assert_eq!(files_in(&dir.path().join("blobs")), 0);
    }

    #[tokio::test]
    async fn a_staged_upload_is_readable_and_vanishes_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::new(dir.path()).unwrap();
        let staged = store.stage(chunks(&[b"abc"]), 100).await.unwrap();
        let mut text = String::new();
        store.open_staged(&staged).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "abc");
        assert!(matches!(store.open(&staged.sha256), Err(FileStoreError::NotFound(_))), "not stored yet");
        drop(staged);
        assert_eq!(files_in(&dir.path().join("tmp")), 0);
        assert_eq!(files_in(&dir.path().join("blobs")), 0);
    }

    #[tokio::test]
    async fn a_failing_stream_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::new(dir.path()).unwrap();
        let parts: Vec<Result<Bytes, io::Error>> = vec![Ok(Bytes::from_static(b"abc")), Err(io::Error::other("gone"))];
        let refused = store.put(futures::stream::iter(parts).boxed(), 100).await;
        assert!(matches!(refused, Err(FileStoreError::Source(_))));
        assert_eq!(files_in(&dir.path().join("tmp")), 0);
    }

    #[tokio::test]
    async fn listing_shows_stored_files_and_committing_again_refreshes_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::new(dir.path()).unwrap();
        let blob = store.put(chunks(&[b"abc"]), 100).await.unwrap();
        let path = store.path_of(&blob.sha256).unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(3 * 24 * 3600);
        std::fs::File::options().append(true).open(&path).unwrap().set_modified(old).unwrap();
        std::fs::write(path.with_file_name("not-a-key"), b"x").unwrap();
        let listed = store.list().await.unwrap();
        assert_eq!(listed, vec![BlobInfo { sha256: blob.sha256.clone(), size: 3, modified: old }]);
        store.put(chunks(&[b"abc"]), 100).await.unwrap();
        assert!(store.list().await.unwrap()[0].modified > old, "storing it again touched it");

        let partial = dir.path().join("tmp").join("left-by-a-crash.part");
        std::fs::write(&partial, b"half").unwrap();
        assert_eq!(store.remove_stale_partials(old).await.unwrap(), 0, "younger than the cut-off");
        assert_eq!(
            store.remove_stale_partials(SystemTime::now() + std::time::Duration::from_secs(1)).await.unwrap(),
            1
        );
        assert!(!partial.exists());
    }

    #[test]
    fn keys_that_are_not_a_sha256_never_become_paths() {
        let store = LocalFileStore { root: PathBuf::from("/data") };
        for key in ["../etc/passwd", "/etc/passwd", "", "ab\0cd", &"A".repeat(64), &"g".repeat(64)] {
            assert!(matches!(store.path_of(key), Err(FileStoreError::InvalidKey)), "{key:?}");
        }
        assert!(store.path_of(&"a".repeat(64)).unwrap().starts_with("/data/blobs/aa"));
    }
}

//! A bounded read-through cache in front of the artifact store, so that a hot site is served from
//! memory and never waits on a remote store (S3).
//!
//! Objects and manifests are immutable, so nothing is ever stale: an object cached under its hash
//! is that object forever. Only what exists is cached — a missing object or manifest may be
//! written later (a deployment appears when its manifest is written last), so misses are never
//! remembered.

use crate::lru::{Lru, lock};
use bytes::Bytes;
use platform::DeploymentId;
use platform::artifacts::{ArtifactStore, ContentHash, Manifest, ObjectReader, StoreError, async_trait};
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;

/// Manifests kept by default (see [`CachedStore::with_manifest_capacity`]).
pub const DEFAULT_MANIFEST_CAPACITY: usize = 1024;

/// What a cached object costs beyond its bytes (key, map and list entries), so that many tiny
/// files cannot grow the cache past its budget.
pub const ENTRY_OVERHEAD_BYTES: u64 = 256;

/// Hashes remembered as too big to cache, so their readers skip the miss path; forgotten wholesale
/// when full (forgetting only costs one more trip through the miss path).
const KNOWN_BIG_CAPACITY: usize = 4096;

/// An [`ArtifactStore`] that answers reads from memory when it can.
///
/// * `get_object`: objects of at most `max_object_bytes` are read whole from the inner store
///   once and then served from memory (least recently used evicted first; the cached bytes plus
///   [`ENTRY_OVERHEAD_BYTES`] per object never exceed `budget_bytes`). Concurrent misses of one
///   object wait for a single fetch. Bigger objects are streamed from the inner store every time.
/// * `cached_object`: the bytes of a cached object, at once — the router's hot path answers
///   from it without a future, a reader or a copy. Worth it in front of the local store too:
///   a hit costs no file open and no blocking-pool round trips.
/// * `get_object_range`: a slice of a cached object, else a ranged read of the inner store
///   (a range does not fill the cache: it is usually a part of a big file).
/// * `get_manifest`: cached by deployment id, at most [`DEFAULT_MANIFEST_CAPACITY`] (LRU).
/// * Writes, deletes and `object_count` go to the inner store; `delete_manifest` also evicts.
pub struct CachedStore {
    inner: Arc<dyn ArtifactStore>,
    max_object_bytes: u64,
    objects: Mutex<Lru<ContentHash, Bytes>>,
    /// One gate per object being fetched: concurrent misses queue on it, then find it cached.
    fetching: Mutex<HashMap<ContentHash, Arc<tokio::sync::Mutex<()>>>>,
    known_big: Mutex<HashSet<ContentHash>>,
    manifests: Mutex<ManifestCache>,
    counters: Counters,
}

struct ManifestCache {
    lru: Lru<DeploymentId, Arc<Manifest>>,
    /// Bumped by every manifest write or delete: a read that started before one does not cache
    /// what it read (it could re-insert a manifest just deleted).
    epoch: u64,
}

#[derive(Default)]
struct Counters {
    object_hits: AtomicU64,
    object_misses: AtomicU64,
    object_bypasses: AtomicU64,
    manifest_hits: AtomicU64,
    manifest_misses: AtomicU64,
}

/// A snapshot of the cache's counters and contents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Objects served from memory.
    pub object_hits: u64,
    /// Objects read from the inner store and kept.
    pub object_misses: u64,
    /// Objects streamed from the inner store because they are bigger than `max_object_bytes`.
    pub object_bypasses: u64,
    /// Objects evicted to stay within the budget.
    pub object_evictions: u64,
    pub cached_objects: u64,
    /// What the cached objects cost against the budget: their bytes plus the per-entry overhead.
    pub cached_bytes: u64,
    pub manifest_hits: u64,
    pub manifest_misses: u64,
    pub cached_manifests: u64,
}

impl CachedStore {
    /// `budget_bytes` bounds the memory held by cached objects; objects bigger than
    /// `max_object_bytes` (or than the budget) are never cached.
    pub fn new(inner: Arc<dyn ArtifactStore>, budget_bytes: u64, max_object_bytes: u64) -> Self {
        let max_object_bytes = max_object_bytes.min(budget_bytes.saturating_sub(ENTRY_OVERHEAD_BYTES));
        Self {
            inner,
            max_object_bytes,
            objects: Mutex::new(Lru::new(budget_bytes)),
            fetching: Mutex::default(),
            known_big: Mutex::default(),
            manifests: Mutex::new(ManifestCache {
                lru: Lru::new(DEFAULT_MANIFEST_CAPACITY as u64),
                epoch: 0,
            }),
            counters: Counters::default(),
        }
    }

    /// Keeps at most `capacity` manifests instead of [`DEFAULT_MANIFEST_CAPACITY`].
    pub fn with_manifest_capacity(self, capacity: usize) -> Self {
        lock(&self.manifests).lru = Lru::new(capacity as u64);
        self
    }

    pub fn inner(&self) -> &Arc<dyn ArtifactStore> {
        &self.inner
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let (cached_objects, cached_bytes, object_evictions) = {
            let objects = lock(&self.objects);
            (objects.len(), objects.weight(), objects.evictions())
        };
        CacheStats {
            object_hits: c.object_hits.load(Ordering::Relaxed),
            object_misses: c.object_misses.load(Ordering::Relaxed),
            object_bypasses: c.object_bypasses.load(Ordering::Relaxed),
            object_evictions,
            cached_objects,
            cached_bytes,
            manifest_hits: c.manifest_hits.load(Ordering::Relaxed),
            manifest_misses: c.manifest_misses.load(Ordering::Relaxed),
            cached_manifests: lock(&self.manifests).lru.len(),
        }
    }

    fn hit(&self, hash: &ContentHash) -> Option<Bytes> {
        let bytes = lock(&self.objects).get(hash)?;
        self.counters.object_hits.fetch_add(1, Ordering::Relaxed);
        Some(bytes)
    }

    fn is_known_big(&self, hash: &ContentHash) -> bool {
        lock(&self.known_big).contains(hash)
    }

    fn remember_big(&self, hash: &ContentHash) {
        let mut big = lock(&self.known_big);
        if big.len() >= KNOWN_BIG_CAPACITY {
            big.clear();
        }
        big.insert(hash.clone());
    }

    async fn streamed(&self, hash: &ContentHash) -> Result<ObjectReader, StoreError> {
        let object = self.inner.get_object(hash).await?;
        self.counters.object_bypasses.fetch_add(1, Ordering::Relaxed);
        Ok(object)
    }

    /// Reads a small object whole and caches it.
    async fn fetch_small(&self, hash: &ContentHash, mut object: ObjectReader) -> Result<ObjectReader, StoreError> {
        // The length was checked against max_object_bytes, itself at most the budget.
        let mut bytes = Vec::with_capacity(object.len as usize);
        (&mut object.reader)
            .take(object.len.saturating_add(1))
            .read_to_end(&mut bytes)
            .await?;
        if bytes.len() as u64 != object.len {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "object {hash}: the store announced {} bytes and sent {}",
                    object.len,
                    bytes.len()
                ),
            )));
        }
        let bytes = Bytes::from(bytes);
        lock(&self.objects).insert(hash.clone(), bytes.clone(), bytes.len() as u64 + ENTRY_OVERHEAD_BYTES);
        self.counters.object_misses.fetch_add(1, Ordering::Relaxed);
        Ok(in_memory(bytes))
    }

    fn evict_manifest(&self, id: &DeploymentId) {
        let mut manifests = lock(&self.manifests);
        manifests.epoch += 1;
        manifests.lru.remove(id);
    }
}

#[async_trait]
impl ArtifactStore for CachedStore {
    async fn put_object(&self, hash: &ContentHash, src: &Path) -> Result<bool, StoreError> {
        self.inner.put_object(hash, src).await
    }

    async fn get_object(&self, hash: &ContentHash) -> Result<ObjectReader, StoreError> {
        if let Some(hit) = self.hit(hash) {
            return Ok(in_memory(hit));
        }
        if self.is_known_big(hash) {
            return self.streamed(hash).await;
        }
        // Miss: one fetch per object at a time; whoever waited finds it cached (or known big).
        let flight = Flight::join(self, hash);
        let guard = flight.gate().lock().await;
        if let Some(hit) = self.hit(hash) {
            return Ok(in_memory(hit));
        }
        if self.is_known_big(hash) {
            drop(guard);
            return self.streamed(hash).await;
        }
        let object = self.inner.get_object(hash).await?;
        if object.len > self.max_object_bytes {
            self.remember_big(hash);
            drop(guard);
            self.counters.object_bypasses.fetch_add(1, Ordering::Relaxed);
            return Ok(object);
        }
        self.fetch_small(hash, object).await
    }

    async fn get_object_range(&self, hash: &ContentHash, start: u64, len: u64) -> Result<ObjectReader, StoreError> {
        match self.hit(hash) {
            Some(bytes) => {
                let end = platform::artifacts::check_range(hash, start, len, bytes.len() as u64)?;
                // Both ends are within `bytes.len()`, a usize.
                Ok(in_memory(bytes.slice(start as usize..end as usize)))
            }
            None => self.inner.get_object_range(hash, start, len).await,
        }
    }

    fn cached_object(&self, hash: &ContentHash) -> Option<Bytes> {
        self.hit(hash)
    }

    async fn put_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let result = self.inner.put_manifest(manifest).await;
        self.evict_manifest(&manifest.deployment_id);
        result
    }

    async fn get_manifest(&self, id: &DeploymentId) -> Result<Option<Manifest>, StoreError> {
        let epoch = {
            let mut manifests = lock(&self.manifests);
            if let Some(manifest) = manifests.lru.get(id) {
                self.counters.manifest_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(Manifest::clone(&manifest)));
            }
            manifests.epoch
        };
        self.counters.manifest_misses.fetch_add(1, Ordering::Relaxed);
        let found = self.inner.get_manifest(id).await?;
        if let Some(manifest) = &found {
            let mut manifests = lock(&self.manifests);
            if manifests.epoch == epoch {
                manifests.lru.insert(id.clone(), Arc::new(manifest.clone()), 1);
            }
        }
        Ok(found)
    }

    async fn delete_manifest(&self, id: &DeploymentId) -> Result<(), StoreError> {
        let result = self.inner.delete_manifest(id).await;
        self.evict_manifest(id);
        result
    }

    async fn object_count(&self) -> Result<u64, StoreError> {
        self.inner.object_count().await
    }
}

/// Membership in the fetch of one object; the last one out removes the gate. Gates are cloned
/// and dropped only under the `fetching` lock, so their reference count is exact there.
struct Flight<'a> {
    fetching: &'a Mutex<HashMap<ContentHash, Arc<tokio::sync::Mutex<()>>>>,
    hash: &'a ContentHash,
    gate: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl<'a> Flight<'a> {
    fn join(store: &'a CachedStore, hash: &'a ContentHash) -> Self {
        let gate = lock(&store.fetching).entry(hash.clone()).or_default().clone();
        Self {
            fetching: &store.fetching,
            hash,
            gate: Some(gate),
        }
    }

    fn gate(&self) -> &tokio::sync::Mutex<()> {
        self.gate.as_ref().expect("a flight has its gate until dropped")
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut fetching = lock(self.fetching);
        let Some(ours) = self.gate.take() else { return };
        let last = fetching
            .get(self.hash)
            .is_some_and(|gate| Arc::ptr_eq(gate, &ours) && Arc::strong_count(gate) == 2);
        drop(ours);
        if last {
            fetching.remove(self.hash);
        }
    }
}

fn in_memory(bytes: Bytes) -> ObjectReader {
    ObjectReader {
        len: bytes.len() as u64,
        reader: Box::pin(io::Cursor::new(bytes)),
    }
}

#[cfg(test)]
mod tests;

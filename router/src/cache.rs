//! A bounded read-through cache in front of the artifact store, so that a hot site is served from
//! memory and never waits on a remote store (S3).
//!
//! Objects and manifests are immutable, so nothing is ever stale: an object cached under its hash
//! is that object forever. Only what exists is cached — a missing object or manifest may be
//! written later (a deployment appears when its manifest is written last), so misses are never
//! remembered.

use bytes::Bytes;
use platform::DeploymentId;
use platform::artifacts::{ArtifactStore, ContentHash, Manifest, ObjectReader, StoreError, async_trait};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
            (objects.len(), objects.weight, objects.evictions)
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

/// Locks a cache map. Nothing that runs under these locks panics halfway through an update, so a
/// poisoned lock still guards a consistent map and is used as is.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Least-recently-used entries with weights, bounded by their total weight.
struct Lru<K, V> {
    entries: HashMap<K, LruEntry<V>>,
    /// Entries by last use, oldest first.
    order: BTreeMap<u64, K>,
    clock: u64,
    weight: u64,
    budget: u64,
    evictions: u64,
}

struct LruEntry<V> {
    value: V,
    weight: u64,
    used: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> Lru<K, V> {
    fn new(budget: u64) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
            weight: 0,
            budget,
            evictions: 0,
        }
    }

    fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    fn get(&mut self, key: &K) -> Option<V> {
        let entry = self.entries.get_mut(key)?;
        let k = self.order.remove(&entry.used).expect("every entry is in the order");
        self.clock += 1;
        entry.used = self.clock;
        self.order.insert(self.clock, k);
        Some(entry.value.clone())
    }

    /// Inserts (or replaces), evicting the least recently used entries to make room. A value
    /// heavier than the whole budget is not kept.
    fn insert(&mut self, key: K, value: V, weight: u64) {
        self.remove(&key);
        if weight > self.budget {
            return;
        }
        while self.weight + weight > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.weight -= evicted.weight;
                self.evictions += 1;
            }
        }
        self.clock += 1;
        self.order.insert(self.clock, key.clone());
        self.entries.insert(
            key,
            LruEntry {
                value,
                weight,
                used: self.clock,
            },
        );
        self.weight += weight;
    }

    fn remove(&mut self, key: &K) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.used);
            self.weight -= entry.weight;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::RelPath;
    use platform::artifacts::{FileEntry, LocalArtifactStore};
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// An in-memory store that counts what reaches it.
    #[derive(Default)]
    struct Counting {
        objects: Mutex<HashMap<ContentHash, Vec<u8>>>,
        manifests: Mutex<HashMap<DeploymentId, Manifest>>,
        object_reads: AtomicU64,
        manifest_reads: AtomicU64,
        writes: AtomicU64,
        deletes: AtomicU64,
        /// How long each object read takes to answer.
        latency: Duration,
        /// Announce this many more bytes than are sent (a broken store).
        lie_by: u64,
    }

    impl Counting {
        fn slow(latency: Duration) -> Self {
            Self {
                latency,
                ..Self::default()
            }
        }

        fn add(&self, bytes: &[u8]) -> ContentHash {
            let hash = ContentHash::of(bytes);
            self.objects.lock().unwrap().insert(hash.clone(), bytes.to_vec());
            hash
        }

        fn add_manifest(&self) -> Manifest {
            let mut files = BTreeMap::new();
            files.insert(
                RelPath::parse("index.html").unwrap(),
                FileEntry {
                    hash: ContentHash::of(b"x"),
                    size: 1,
                    content_type: "text/html".into(),
                    encodings: Default::default(),
                },
            );
            let m = Manifest {
                deployment_id: DeploymentId::generate(),
                spa: false,
                files,
                rules: Default::default(),
            };
            self.manifests
                .lock()
                .unwrap()
                .insert(m.deployment_id.clone(), m.clone());
            m
        }

        fn object_reads(&self) -> u64 {
            self.object_reads.load(Ordering::SeqCst)
        }

        fn manifest_reads(&self) -> u64 {
            self.manifest_reads.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl ArtifactStore for Counting {
        async fn put_object(&self, hash: &ContentHash, src: &Path) -> Result<bool, StoreError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            let bytes = tokio::fs::read(src).await?;
            Ok(self.objects.lock().unwrap().insert(hash.clone(), bytes).is_none())
        }

        async fn get_object(&self, hash: &ContentHash) -> Result<ObjectReader, StoreError> {
            self.object_reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.latency).await;
            let bytes = self.objects.lock().unwrap().get(hash).cloned();
            let bytes = bytes.ok_or_else(|| StoreError::MissingObject(hash.clone()))?;
            Ok(ObjectReader {
                len: bytes.len() as u64 + self.lie_by,
                // Small pieces, as a network stream would arrive.
                reader: Box::pin(tokio::io::BufReader::with_capacity(7, io::Cursor::new(bytes))),
            })
        }

        async fn put_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.manifests
                .lock()
                .unwrap()
                .insert(manifest.deployment_id.clone(), manifest.clone());
            Ok(())
        }

        async fn get_manifest(&self, id: &DeploymentId) -> Result<Option<Manifest>, StoreError> {
            self.manifest_reads.fetch_add(1, Ordering::SeqCst);
            Ok(self.manifests.lock().unwrap().get(id).cloned())
        }

        async fn delete_manifest(&self, id: &DeploymentId) -> Result<(), StoreError> {
            self.deletes.fetch_add(1, Ordering::SeqCst);
            self.manifests.lock().unwrap().remove(id);
            Ok(())
        }

        async fn object_count(&self) -> Result<u64, StoreError> {
            Ok(self.objects.lock().unwrap().len() as u64)
        }
    }

    fn cached(inner: &Arc<Counting>, budget: u64, max: u64) -> CachedStore {
        CachedStore::new(inner.clone(), budget, max)
    }

    async fn read(store: &CachedStore, hash: &ContentHash) -> Vec<u8> {
        let mut object = match store.get_object(hash).await {
            Ok(object) => object,
            Err(e) => panic!("cannot read {hash:?}: {e}"),
        };
        let mut bytes = Vec::new();
        object.reader.read_to_end(&mut bytes).await.unwrap();
        assert_eq!(object.len, bytes.len() as u64);
        bytes
    }

    fn sized(len: usize, tag: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31) ^ tag).collect()
    }

    #[tokio::test]
    async fn repeated_reads_come_from_memory() {
        let inner = Arc::new(Counting::default());
        let hash = inner.add(b"hello, world");
        let store = cached(&inner, 1 << 20, 1 << 16);
        for _ in 0..3 {
            assert_eq!(read(&store, &hash).await, b"hello, world");
        }
        assert_eq!(inner.object_reads(), 1);
        let stats = store.stats();
        assert_eq!(
            (stats.object_hits, stats.object_misses, stats.object_bypasses),
            (2, 1, 0)
        );
        assert_eq!(stats.cached_objects, 1);
        assert_eq!(stats.cached_bytes, 12 + ENTRY_OVERHEAD_BYTES);
    }

    #[tokio::test]
    async fn missing_objects_are_not_remembered() {
        let inner = Arc::new(Counting::default());
        let store = cached(&inner, 1 << 20, 1 << 16);
        let hash = ContentHash::of(b"later");
        for _ in 0..2 {
            assert!(matches!(
                store.get_object(&hash).await,
                Err(StoreError::MissingObject(_))
            ));
        }
        assert_eq!(inner.object_reads(), 2);
        // Stored afterwards: found.
        inner.add(b"later");
        assert_eq!(read(&store, &hash).await, b"later");
        assert_eq!(store.stats().cached_objects, 1);
    }

    #[tokio::test]
    async fn eviction_keeps_the_budget_and_drops_the_least_recently_used() {
        let inner = Arc::new(Counting::default());
        let cost = 1000 + ENTRY_OVERHEAD_BYTES;
        let budget = 3 * cost + 10;
        let store = cached(&inner, budget, 4096);
        let hashes: Vec<ContentHash> = (0..6).map(|i| inner.add(&sized(1000, i))).collect();
        for (i, hash) in hashes.iter().enumerate() {
            assert_eq!(read(&store, hash).await, sized(1000, i as u8));
            let stats = store.stats();
            assert!(stats.cached_bytes <= budget, "{stats:?}");
            assert!(stats.cached_objects <= 3, "{stats:?}");
        }
        // 3, 4, 5 are cached; using 3 makes 4 the oldest, so reading 0 evicts 4.
        let before = inner.object_reads();
        read(&store, &hashes[3]).await;
        assert_eq!(inner.object_reads(), before);
        read(&store, &hashes[0]).await;
        assert_eq!(inner.object_reads(), before + 1);
        read(&store, &hashes[3]).await;
        read(&store, &hashes[5]).await;
        assert_eq!(inner.object_reads(), before + 1, "3 and 5 stayed");
        read(&store, &hashes[4]).await;
        assert_eq!(inner.object_reads(), before + 2, "4 was evicted");
        let stats = store.stats();
        assert_eq!(stats.cached_objects, 3);
        assert_eq!(stats.cached_bytes, 3 * cost);
        assert_eq!(stats.object_evictions, 5);
    }

    #[tokio::test]
    async fn many_tiny_objects_are_bounded_too() {
        let inner = Arc::new(Counting::default());
        let budget = 10 * ENTRY_OVERHEAD_BYTES;
        let store = cached(&inner, budget, 1024);
        for i in 0..100u32 {
            let hash = inner.add(&i.to_le_bytes());
            read(&store, &hash).await;
        }
        let stats = store.stats();
        assert!(stats.cached_bytes <= budget, "{stats:?}");
        assert!(stats.cached_objects < 10, "{stats:?}");
    }

    #[tokio::test]
    async fn big_objects_are_streamed_past_the_cache() {
        let inner = Arc::new(Counting::default());
        let big = sized(5000, 1);
        let hash = inner.add(&big);
        let store = cached(&inner, 1 << 20, 1000);
        for _ in 0..3 {
            assert_eq!(read(&store, &hash).await, big);
        }
        assert_eq!(inner.object_reads(), 3);
        let stats = store.stats();
        assert_eq!(
            (stats.object_hits, stats.object_misses, stats.object_bypasses),
            (0, 0, 3)
        );
        assert_eq!((stats.cached_objects, stats.cached_bytes), (0, 0));
        // Exactly at the limit is cached.
        let edge = inner.add(&sized(1000, 2));
        read(&store, &edge).await;
        read(&store, &edge).await;
        assert_eq!(store.stats().object_hits, 1);
    }

    #[tokio::test]
    async fn objects_bigger_than_the_budget_are_never_cached() {
        let inner = Arc::new(Counting::default());
        let hash = inner.add(&sized(3000, 3));
        let store = cached(&inner, 2000, u64::MAX);
        read(&store, &hash).await;
        read(&store, &hash).await;
        assert_eq!(inner.object_reads(), 2);
        assert_eq!(store.stats().cached_bytes, 0);
        // A zero budget caches nothing at all.
        let none = cached(&inner, 0, u64::MAX);
        let tiny = inner.add(b"");
        read(&none, &tiny).await;
        read(&none, &tiny).await;
        assert_eq!(none.stats().object_hits, 0);
    }

    #[tokio::test]
    async fn concurrent_readers_share_one_fetch_and_get_the_same_bytes() {
        let inner = Arc::new(Counting::slow(Duration::from_millis(50)));
        let bytes = sized(10_000, 4);
        let hash = inner.add(&bytes);
        let store = Arc::new(cached(&inner, 1 << 20, 1 << 16));
        let readers: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                let hash = hash.clone();
                tokio::spawn(async move { read(&store, &hash).await })
            })
            .collect();
        for reader in readers {
            assert_eq!(reader.await.unwrap(), bytes);
        }
        assert_eq!(inner.object_reads(), 1, "one fetch for 16 concurrent misses");
        let stats = store.stats();
        assert_eq!((stats.object_hits, stats.object_misses), (15, 1));
        assert!(lock(&store.fetching).is_empty(), "no gate left behind");
    }

    #[tokio::test]
    async fn concurrent_readers_of_a_big_object_each_stream_it() {
        let inner = Arc::new(Counting::slow(Duration::from_millis(20)));
        let bytes = sized(50_000, 5);
        let hash = inner.add(&bytes);
        let store = Arc::new(cached(&inner, 1 << 20, 1000));
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                let hash = hash.clone();
                tokio::spawn(async move { read(&store, &hash).await })
            })
            .collect();
        for reader in readers {
            assert_eq!(reader.await.unwrap(), bytes);
        }
        assert_eq!(inner.object_reads(), 8);
        assert_eq!(store.stats().object_bypasses, 8);
        assert!(lock(&store.fetching).is_empty());
    }

    #[tokio::test]
    async fn a_store_that_sends_less_than_it_announced_is_an_error_and_not_cached() {
        let inner = Arc::new(Counting {
            lie_by: 3,
            ..Counting::default()
        });
        let hash = inner.add(b"short");
        let store = cached(&inner, 1 << 20, 1 << 16);
        for _ in 0..2 {
            match store.get_object(&hash).await {
                Err(StoreError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
                Err(e) => panic!("unexpected {e}"),
                Ok(_) => panic!("a short object was served"),
            }
        }
        assert_eq!(inner.object_reads(), 2);
        assert_eq!(store.stats().cached_objects, 0);
    }

    #[tokio::test]
    async fn manifests_are_cached_by_id_and_misses_are_not() {
        let inner = Arc::new(Counting::default());
        let store = cached(&inner, 1 << 20, 1 << 16);
        let m = inner.add_manifest();
        for _ in 0..3 {
            assert_eq!(store.get_manifest(&m.deployment_id).await.unwrap(), Some(m.clone()));
        }
        assert_eq!(inner.manifest_reads(), 1);
        // A deployment whose manifest is not written yet becomes visible once it is.
        let later = DeploymentId::generate();
        assert_eq!(store.get_manifest(&later).await.unwrap(), None);
        let mut written = m.clone();
        written.deployment_id = later.clone();
        store.put_manifest(&written).await.unwrap();
        assert_eq!(store.get_manifest(&later).await.unwrap(), Some(written));
        let stats = store.stats();
        assert_eq!((stats.manifest_hits, stats.manifest_misses), (2, 3));
    }

    #[tokio::test]
    async fn deleting_a_manifest_evicts_it() {
        let inner = Arc::new(Counting::default());
        let store = cached(&inner, 1 << 20, 1 << 16);
        let m = inner.add_manifest();
        store.get_manifest(&m.deployment_id).await.unwrap();
        store.delete_manifest(&m.deployment_id).await.unwrap();
        assert_eq!(inner.deletes.load(Ordering::SeqCst), 1);
        assert_eq!(store.get_manifest(&m.deployment_id).await.unwrap(), None);
        assert_eq!(store.stats().cached_manifests, 0);
    }

    #[tokio::test]
    async fn the_manifest_count_is_bounded() {
        let inner = Arc::new(Counting::default());
        let store = cached(&inner, 1 << 20, 1 << 16).with_manifest_capacity(2);
        let ms: Vec<Manifest> = (0..3).map(|_| inner.add_manifest()).collect();
        for m in &ms {
            store.get_manifest(&m.deployment_id).await.unwrap();
        }
        assert_eq!(store.stats().cached_manifests, 2);
        // The first was evicted, the last two are there.
        store.get_manifest(&ms[2].deployment_id).await.unwrap();
        store.get_manifest(&ms[1].deployment_id).await.unwrap();
        assert_eq!(inner.manifest_reads(), 3);
        store.get_manifest(&ms[0].deployment_id).await.unwrap();
        assert_eq!(inner.manifest_reads(), 4);
    }

    #[tokio::test]
    async fn writes_and_counts_pass_through() {
        let inner = Arc::new(Counting::default());
        let store = cached(&inner, 1 << 20, 1 << 16);
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("f");
        std::fs::write(&src, b"written").unwrap();
        let hash = ContentHash::of(b"written");
        assert!(store.put_object(&hash, &src).await.unwrap());
        assert!(!store.put_object(&hash, &src).await.unwrap());
        store.put_manifest(&inner.add_manifest()).await.unwrap();
        assert_eq!(inner.writes.load(Ordering::SeqCst), 3);
        assert_eq!(store.object_count().await.unwrap(), 1);
        assert_eq!(read(&store, &hash).await, b"written");
    }

    async fn read_range(store: &CachedStore, hash: &ContentHash, start: u64, len: u64) -> Vec<u8> {
        let mut object = store.get_object_range(hash, start, len).await.unwrap();
        assert_eq!(object.len, len);
        let mut bytes = Vec::new();
        object.reader.read_to_end(&mut bytes).await.unwrap();
        bytes
    }

    #[tokio::test]
    async fn cached_bytes_are_there_at_once_after_the_first_read() {
        let inner = Arc::new(Counting::default());
        let hash = inner.add(b"hot file");
        let store = cached(&inner, 1 << 20, 1 << 16);
        assert_eq!(store.cached_object(&hash), None, "nothing is fetched by asking");
        assert_eq!(inner.object_reads(), 0);
        read(&store, &hash).await;
        for _ in 0..3 {
            assert_eq!(store.cached_object(&hash).as_deref(), Some(&b"hot file"[..]));
        }
        assert_eq!(inner.object_reads(), 1);
        assert_eq!(store.stats().object_hits, 3);
        // Big objects never are.
        let big = inner.add(&sized(5000, 9));
        let small_cache = cached(&inner, 1 << 20, 1000);
        read(&small_cache, &big).await;
        assert_eq!(small_cache.cached_object(&big), None);
    }

    #[tokio::test]
    async fn ranges_are_sliced_from_memory_or_read_from_the_store() {
        let inner = Arc::new(Counting::default());
        let bytes = sized(3000, 8);
        let hash = inner.add(&bytes);
        let store = cached(&inner, 1 << 20, 1 << 16);
        // Not cached: the inner store serves the range, and the cache stays empty.
        assert_eq!(read_range(&store, &hash, 10, 20).await, bytes[10..30]);
        assert_eq!((inner.object_reads(), store.stats().cached_objects), (1, 0));
        // Cached: slices of memory, no more reads.
        read(&store, &hash).await;
        assert_eq!(inner.object_reads(), 2);
        assert_eq!(read_range(&store, &hash, 0, 3000).await, bytes);
        assert_eq!(read_range(&store, &hash, 2999, 1).await, bytes[2999..]);
        assert_eq!(read_range(&store, &hash, 3000, 0).await, b"");
        assert_eq!(inner.object_reads(), 2);
        for (start, len) in [(0, 3001), (3000, 1), (u64::MAX, 2)] {
            match store.get_object_range(&hash, start, len).await {
                Err(StoreError::RangeNotSatisfiable { size: 3000, .. }) => {}
                Err(e) => panic!("{start}+{len}: unexpected {e}"),
                Ok(_) => panic!("{start}+{len}: a range past the end was served"),
            }
        }
    }

    #[tokio::test]
    async fn works_in_front_of_the_local_store() {
        let dir = tempfile::tempdir().unwrap();
        let local = Arc::new(LocalArtifactStore::open(dir.path().join("store")).await.unwrap());
        let store = CachedStore::new(local, 1 << 20, 1 << 10);
        for (name, bytes) in [("small", sized(100, 6)), ("big", sized(5000, 7))] {
            let src = dir.path().join(name);
            std::fs::write(&src, &bytes).unwrap();
            let hash = ContentHash::of(&bytes);
            store.put_object(&hash, &src).await.unwrap();
            assert_eq!(read(&store, &hash).await, bytes);
            assert_eq!(read(&store, &hash).await, bytes);
        }
        let stats = store.stats();
        assert_eq!(
            (stats.object_hits, stats.object_misses, stats.object_bypasses),
            (1, 1, 2)
        );
    }
}

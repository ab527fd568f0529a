use super::*;
use platform::RelPath;
use platform::artifacts::FileEntry;
use std::collections::BTreeMap;
use std::time::Duration;
use store::LocalArtifactStore;

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

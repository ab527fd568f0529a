//! The behavioural suite of [`ArtifactStore`]: every test in [`suite!`] runs against
//! [`LocalArtifactStore`] (`tests::local::*`) and against [`S3ArtifactStore`] on a fresh
//! bucket (`tests::s3::*`) when `CLOUDRUNR_TEST_AWS_ENDPOINT` names an S3-compatible
//! server (e.g. `moto_server`, which `scripts/services start` runs).
//!
//! Without that variable the S3 tests are skipped — unless `CI` or `CLOUDRUNR_REQUIRE_SERVICES=1`
//! is set, where they fail instead: CI must never pass by skipping them.

use crate::{LocalArtifactStore, S3ArtifactStore, S3Options};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use platform::artifacts::*;
use platform::{DeploymentId, RelPath};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

// ---------------------------------------------------------------------------------------------
// Harness

/// A store under test plus a scratch directory for source files.
struct Harness {
    store: Arc<dyn ArtifactStore>,
    dir: tempfile::TempDir,
    /// The bucket to empty and delete once the test passed (S3 only).
    bucket: Option<(Client, String)>,
}

impl Harness {
    /// Writes `bytes` to a source file; returns its hash and path.
    fn file(&self, name: &str, bytes: &[u8]) -> (ContentHash, PathBuf) {
        let path = self.dir.path().join("src").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        (ContentHash::of(bytes), path)
    }

    /// Stores `bytes` as an object (from a file named after its hash).
    async fn put(&self, bytes: &[u8]) -> ContentHash {
        let hash = ContentHash::of(bytes);
        let (_, path) = self.file(hash.as_str(), bytes);
        self.store.put_object(&hash, &path).await.unwrap();
        hash
    }

    /// Reads an object whole, checking that its announced length is what was streamed.
    async fn read(&self, hash: &ContentHash) -> Vec<u8> {
        let mut object = match self.store.get_object(hash).await {
            Ok(object) => object,
            Err(e) => panic!("cannot read {hash:?}: {e}"),
        };
        let mut bytes = Vec::new();
        object.reader.read_to_end(&mut bytes).await.unwrap();
        assert_eq!(object.len, bytes.len() as u64, "announced length of {hash:?}");
        bytes
    }

    async fn finish(self) {
        if let Some((client, bucket)) = self.bucket {
            delete_bucket(&client, &bucket).await;
        }
    }
}

async fn local() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalArtifactStore::open(dir.path().join("store")).await.unwrap();
    Harness {
        store: Arc::new(store),
        dir,
        bucket: None,
    }
}

/// A store on a fresh bucket, under a two-segment prefix; `None` when no server is configured.
async fn s3() -> Option<Harness> {
    let endpoint = test_endpoint()?;
    let client = test_client(&endpoint);
    let bucket = fresh_bucket(&client).await;
    let location = S3Location::new(&bucket, "deployments/test").unwrap();
    Some(Harness {
        store: Arc::new(S3ArtifactStore::with_client(client.clone(), location)),
        dir: tempfile::tempdir().unwrap(),
        bucket: Some((client, bucket)),
    })
}

/// The S3-compatible server of the tests, or `None` (skip) — a panic where skipping is not allowed.
fn test_endpoint() -> Option<String> {
    if let Ok(endpoint) = std::env::var("CLOUDRUNR_TEST_AWS_ENDPOINT")
        && !endpoint.is_empty()
    {
        return Some(endpoint);
    }
    let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    let required = std::env::var("CLOUDRUNR_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
    if ci || required {
        panic!(
            "CLOUDRUNR_TEST_AWS_ENDPOINT is not set, but {} is: the S3 artifact store tests need an \
             S3-compatible server. Run `scripts/services start` (or `moto_server -H 127.0.0.1 -p PORT`) \
             and export CLOUDRUNR_TEST_AWS_ENDPOINT=http://127.0.0.1:PORT",
            if ci { "CI" } else { "CLOUDRUNR_REQUIRE_SERVICES=1" }
        );
    }
    eprintln!("skipping an S3 artifact store test: CLOUDRUNR_TEST_AWS_ENDPOINT is not set");
    None
}

/// A client with static test credentials and no environment lookups.
fn test_client(endpoint: &str) -> Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::from_static("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "cloudrunr-tests"))
        .endpoint_url(endpoint)
        .http_client(S3ArtifactStore::http_client());
    Client::from_conf(crate::s3::tune(config, true).build())
}

async fn fresh_bucket(client: &Client) -> String {
    let mut suffix = [0u8; 8];
    platform::ids::random_bytes(&mut suffix);
    let bucket = format!("cloudrunr-test-{}", hex::encode(suffix));
    if let Err(e) = client.create_bucket().bucket(&bucket).send().await {
        panic!(
            "cannot create test bucket {bucket}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        );
    }
    bucket
}

async fn delete_bucket(client: &Client, bucket: &str) {
    for key in all_keys(client, bucket).await {
        client.delete_object().bucket(bucket).key(key).send().await.unwrap();
    }
    client.delete_bucket().bucket(bucket).send().await.unwrap();
}

async fn all_keys(client: &Client, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return keys;
        }
    }
}

fn manifest(files: &[(&str, &[u8], &str)]) -> Manifest {
    Manifest {
        deployment_id: DeploymentId::generate(),
        spa: false,
        files: files
            .iter()
            .map(|(path, bytes, content_type)| {
                let entry = FileEntry {
                    hash: ContentHash::of(bytes),
                    size: bytes.len() as u64,
                    content_type: (*content_type).to_owned(),
                    encodings: Encodings::default(),
                };
                (RelPath::parse(path).unwrap(), entry)
            })
            .collect(),
        rules: Default::default(),
    }
}

/// Deterministic bytes that do not compress or repeat in any useful way.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The suite

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = super::local().await;
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }

        mod s3 {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(h) = super::s3().await else { return };
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
    };
}

suite!(
    objects_are_stored_once,
    objects_read_back_with_their_length,
    empty_objects_are_objects,
    a_missing_object_is_reported_as_missing,
    manifests_round_trip,
    a_missing_manifest_is_none,
    deleted_manifests_are_gone,
    object_count_counts_distinct_objects_only,
    a_5_mb_object_streams_back_intact,
    a_manifest_written_last_makes_a_deployment_visible,
    concurrent_stores_of_one_object_agree,
    ranged_reads_return_exactly_the_bytes_asked_for,
    ranges_past_the_end_are_refused,
    a_range_of_a_big_object_streams,
    manifests_keep_encoded_variants,
);

async fn objects_are_stored_once(h: &Harness) {
    let (hash, src) = h.file("a.txt", b"hello");
    assert!(h.store.put_object(&hash, &src).await.unwrap(), "the first store is new");
    assert!(
        !h.store.put_object(&hash, &src).await.unwrap(),
        "the second store is not"
    );
    // The same content from another file, another deployment: still the same object.
    let (again, other) = h.file("elsewhere/b.txt", b"hello");
    assert_eq!(again, hash);
    assert!(!h.store.put_object(&again, &other).await.unwrap());
    assert_eq!(h.store.object_count().await.unwrap(), 1);
    assert_eq!(h.read(&hash).await, b"hello");
}

async fn objects_read_back_with_their_length(h: &Harness) {
    let text = h.put(b"hello world\n").await;
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let binary = h.put(&all_bytes).await;
    assert_eq!(h.read(&text).await, b"hello world\n");
    assert_eq!(h.read(&binary).await, all_bytes);
    // Reading twice gives the same bytes (nothing is consumed).
    assert_eq!(h.read(&text).await, b"hello world\n");
    assert_eq!(h.store.get_object(&binary).await.unwrap().len, 3000);
}

async fn empty_objects_are_objects(h: &Harness) {
    let empty = h.put(b"").await;
    assert_eq!(empty, ContentHash::of(b""));
    assert_eq!(h.store.get_object(&empty).await.unwrap().len, 0);
    assert_eq!(h.read(&empty).await, b"");
    assert_eq!(h.store.object_count().await.unwrap(), 1);
}

async fn a_missing_object_is_reported_as_missing(h: &Harness) {
    h.put(b"something else").await;
    let missing = ContentHash::of(b"never stored");
    match h.store.get_object(&missing).await {
        Err(StoreError::MissingObject(hash)) => assert_eq!(hash, missing),
        Err(e) => panic!("expected MissingObject, got {e:?}"),
        Ok(_) => panic!("a missing object was found"),
    }
}

async fn manifests_round_trip(h: &Harness) {
    let mut a = manifest(&[
        ("index.html", b"<h1>a</h1>", "text/html"),
        ("app.js", b"1", "text/javascript"),
    ]);
    a.spa = true;
    let b = manifest(&[("docs/index.html", b"<h1>b</h1>", "text/html; charset=utf-8")]);
    h.store.put_manifest(&a).await.unwrap();
    h.store.put_manifest(&b).await.unwrap();
    assert_eq!(h.store.get_manifest(&a.deployment_id).await.unwrap(), Some(a.clone()));
    assert_eq!(h.store.get_manifest(&b.deployment_id).await.unwrap(), Some(b));
    // Manifests are not objects.
    assert_eq!(h.store.object_count().await.unwrap(), 0);
}

async fn a_missing_manifest_is_none(h: &Harness) {
    h.store.put_manifest(&manifest(&[])).await.unwrap();
    assert_eq!(h.store.get_manifest(&DeploymentId::generate()).await.unwrap(), None);
}

async fn deleted_manifests_are_gone(h: &Harness) {
    let hash = h.put(b"kept").await;
    let gone = manifest(&[("index.html", b"kept", "text/html")]);
    let kept = manifest(&[("index.html", b"kept", "text/html")]);
    h.store.put_manifest(&gone).await.unwrap();
    h.store.put_manifest(&kept).await.unwrap();
    h.store.delete_manifest(&gone.deployment_id).await.unwrap();
    assert_eq!(h.store.get_manifest(&gone.deployment_id).await.unwrap(), None);
    // Deleting again, or deleting what never was, is not an error.
    h.store.delete_manifest(&gone.deployment_id).await.unwrap();
    h.store.delete_manifest(&DeploymentId::generate()).await.unwrap();
    // Other manifests and the objects stay.
    assert_eq!(h.store.get_manifest(&kept.deployment_id).await.unwrap(), Some(kept));
    assert_eq!(h.read(&hash).await, b"kept");
}

async fn object_count_counts_distinct_objects_only(h: &Harness) {
    assert_eq!(h.store.object_count().await.unwrap(), 0);
    // Enough objects to land in several `objects/ab/` shards.
    for i in 0..12u32 {
        h.put(format!("object {i}").as_bytes()).await;
    }
    h.put(b"object 3").await;
    h.store
        .put_manifest(&manifest(&[("a", b"object 1", "text/plain")]))
        .await
        .unwrap();
    assert_eq!(h.store.object_count().await.unwrap(), 12);
}

async fn a_5_mb_object_streams_back_intact(h: &Harness) {
    const LEN: usize = 5 * 1024 * 1024;
    let bytes = noise(LEN, 0x5eed);
    let hash = h.put(&bytes).await;
    drop(bytes);
    let object = h.store.get_object(&hash).await.unwrap();
    assert_eq!(object.len, LEN as u64);
    // Read in small pieces: the body must arrive as a stream, in order, whole.
    let (total, reads, digest) = read_in_pieces(object).await;
    assert_eq!(total, LEN);
    assert!(reads >= LEN / PIECE, "read in {reads} pieces");
    assert_eq!(digest, hash);
}

/// The size of the reads of [`read_in_pieces`].
const PIECE: usize = 64 * 1024;

/// Reads `object` to its end in reads of at most [`PIECE`] bytes: the bytes read, how many reads
/// it took, and the hash of what was read.
async fn read_in_pieces(mut object: ObjectReader) -> (usize, usize, ContentHash) {
    let mut digest = Sha256::new();
    let (mut total, mut reads) = (0, 0);
    let mut buf = vec![0u8; PIECE];
    loop {
        let n = object.reader.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
        total += n;
        reads += 1;
    }
    (total, reads, ContentHash::from_digest(digest))
}

async fn a_manifest_written_last_makes_a_deployment_visible(h: &Harness) {
    let files: [(&str, &[u8], &str); 3] = [
        ("index.html", b"<script src=app.js></script>", "text/html"),
        ("app.js", b"console.log(1)", "text/javascript"),
        ("assets/logo.svg", b"<svg/>", "image/svg+xml"),
    ];
    let m = manifest(&files);
    // The deployment's objects are all stored, yet the deployment does not exist...
    for (_, bytes, _) in &files {
        h.put(bytes).await;
    }
    assert_eq!(h.store.get_manifest(&m.deployment_id).await.unwrap(), None);
    // ...until its manifest is written; then everything it names can be read.
    h.store.put_manifest(&m).await.unwrap();
    let found = h.store.get_manifest(&m.deployment_id).await.unwrap().expect("visible");
    assert_eq!(found, m);
    for (path, entry) in &found.files {
        let bytes = h.read(&entry.hash).await;
        assert_eq!(bytes.len() as u64, entry.size, "{path:?}");
        assert_eq!(ContentHash::of(&bytes), entry.hash, "{path:?}");
    }
}

async fn concurrent_stores_of_one_object_agree(h: &Harness) {
    let bytes = noise(200_000, 7);
    let (hash, src) = h.file("big.bin", &bytes);
    let stores = futures::future::join_all((0..6).map(|_| h.store.put_object(&hash, &src))).await;
    let new = stores.into_iter().map(Result::unwrap).filter(|&new| new).count();
    assert!(new >= 1, "someone stored it");
    assert_eq!(h.store.object_count().await.unwrap(), 1);
    assert_eq!(h.read(&hash).await, bytes);
}

/// Reads `len` bytes of `hash` from `start`, checking the announced length.
async fn read_range(h: &Harness, hash: &ContentHash, start: u64, len: u64) -> Vec<u8> {
    let mut object = match h.store.get_object_range(hash, start, len).await {
        Ok(object) => object,
        Err(e) => panic!("cannot read {hash:?} {start}+{len}: {e}"),
    };
    assert_eq!(object.len, len, "announced length of {start}+{len}");
    let mut bytes = Vec::new();
    object.reader.read_to_end(&mut bytes).await.unwrap();
    bytes
}

async fn ranged_reads_return_exactly_the_bytes_asked_for(h: &Harness) {
    let bytes = noise(3000, 11);
    let hash = h.put(&bytes).await;
    for (start, len) in [(0, 1), (0, 3000), (2999, 1), (1000, 500), (1, 2998), (0, 0), (3000, 0)] {
        let got = read_range(h, &hash, start, len).await;
        let (s, e) = (start as usize, (start + len) as usize);
        assert_eq!(got, bytes[s..e], "{start}+{len}");
    }
    // Ranged reads leave the object whole.
    assert_eq!(h.read(&hash).await, bytes);
}

async fn ranges_past_the_end_are_refused(h: &Harness) {
    let hash = h.put(b"0123456789").await;
    for (start, len) in [(0, 11), (10, 1), (9, 2), (50, 1), (11, 0), (u64::MAX, 1), (1, u64::MAX)] {
        match h.store.get_object_range(&hash, start, len).await {
            Err(StoreError::RangeNotSatisfiable { size, .. }) if size == 10 || start == u64::MAX || len == u64::MAX => {
            }
            Err(e) => panic!("{start}+{len}: expected RangeNotSatisfiable, got {e:?}"),
            Ok(_) => panic!("{start}+{len}: a range past the end was served"),
        }
    }
    let missing = ContentHash::of(b"never stored");
    match h.store.get_object_range(&missing, 0, 1).await {
        Err(StoreError::MissingObject(found)) => assert_eq!(found, missing),
        Err(e) => panic!("expected MissingObject, got {e:?}"),
        Ok(_) => panic!("a missing object was found"),
    }
}

async fn a_range_of_a_big_object_streams(h: &Harness) {
    const LEN: usize = 3 * 1024 * 1024;
    let bytes = noise(LEN, 0xb16);
    let hash = h.put(&bytes).await;
    let (start, len) = (1024 * 1024 + 7, 1024 * 1024 + 13);
    let object = h.store.get_object_range(&hash, start as u64, len as u64).await.unwrap();
    assert_eq!(object.len, len as u64);
    let (total, _, digest) = read_in_pieces(object).await;
    assert_eq!(total, len);
    assert_eq!(digest, ContentHash::of(&bytes[start..start + len]));
}

async fn manifests_keep_encoded_variants(h: &Harness) {
    let mut m = manifest(&[
        ("app.js", b"console.log(1)", "text/javascript"),
        ("a.png", b"png", "image/png"),
    ]);
    let variant = |bytes: &[u8]| Variant {
        hash: ContentHash::of(bytes),
        size: bytes.len() as u64,
    };
    let js = m.files.get_mut(&RelPath::parse("app.js").unwrap()).unwrap();
    js.encodings = Encodings {
        br: Some(variant(b"br bytes")),
        gzip: Some(variant(b"gzip bytes")),
    };
    h.store.put_manifest(&m).await.unwrap();
    assert_eq!(h.store.get_manifest(&m.deployment_id).await.unwrap(), Some(m));
}

// ---------------------------------------------------------------------------------------------
// Manifests without variants

#[test]
fn files_without_variants_serialize_as_before() {
    let entry = FileEntry {
        hash: ContentHash::of(b"x"),
        size: 1,
        content_type: "text/plain".into(),
        encodings: Encodings::default(),
    };
    let json = serde_json::to_value(&entry).unwrap();
    assert_eq!(
        json.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["content_type", "hash", "size"]
    );
    // A manifest written before variants existed still reads.
    let old: FileEntry = serde_json::from_value(json).unwrap();
    assert_eq!(old, entry);
    let only_gzip = FileEntry {
        encodings: Encodings {
            br: None,
            gzip: Some(Variant {
                hash: ContentHash::of(b"g"),
                size: 3,
            }),
        },
        ..entry
    };
    let json = serde_json::to_string(&only_gzip).unwrap();
    assert!(
        json.contains("\"encodings\":{\"gzip\":{") && !json.contains("br"),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<FileEntry>(&json).unwrap(), only_gzip);
    assert_eq!(only_gzip.encodings.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// S3 only

#[tokio::test]
async fn s3_keys_follow_the_local_layout_under_the_prefix() {
    let Some(h) = s3().await else { return };
    let (client, bucket) = h.bucket.clone().unwrap();
    let hash = h.put(b"layout").await;
    let m = manifest(&[("index.html", b"layout", "text/html")]);
    h.store.put_manifest(&m).await.unwrap();
    let mut keys = all_keys(&client, &bucket).await;
    keys.sort();
    let object_key = format!("deployments/test/objects/{}/{hash}", &hash.as_str()[..2]);
    assert_eq!(
        keys,
        vec![
            format!("deployments/test/manifests/{}.json", m.deployment_id),
            object_key.clone()
        ]
    );
    let head = client
        .head_object()
        .bucket(&bucket)
        .key(&object_key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/octet-stream"));
    assert_eq!(head.content_length(), Some(6));
    h.finish().await;
}

#[tokio::test]
async fn s3_prefixes_keep_stores_apart() {
    let Some(h) = s3().await else { return };
    let (client, bucket) = h.bucket.clone().unwrap();
    let hash = h.put(b"under a prefix").await;
    let root = S3ArtifactStore::with_client(client.clone(), S3Location::new(&bucket, "").unwrap());
    let sibling = S3ArtifactStore::with_client(client.clone(), S3Location::new(&bucket, "deployments").unwrap());
    for other in [&root, &sibling] {
        assert_eq!(other.object_count().await.unwrap(), 0, "{other:?}");
        assert!(matches!(
            other.get_object(&hash).await,
            Err(StoreError::MissingObject(_))
        ));
    }
    let (_, src) = h.file("root.txt", b"at the root");
    assert!(root.put_object(&ContentHash::of(b"at the root"), &src).await.unwrap());
    assert_eq!(root.object_count().await.unwrap(), 1);
    assert_eq!(h.store.object_count().await.unwrap(), 1);
    h.finish().await;
}

#[tokio::test]
async fn s3_object_count_follows_every_page() {
    let Some(h) = s3().await else { return };
    let (client, bucket) = h.bucket.clone().unwrap();
    for i in 0..7u32 {
        h.put(format!("paged {i}").as_bytes()).await;
    }
    let paged =
        S3ArtifactStore::with_client(client, S3Location::new(&bucket, "deployments/test").unwrap()).with_page_size(2);
    assert_eq!(paged.object_count().await.unwrap(), 7);
    h.finish().await;
}

/// Uploads carry the SHA-256 they are stored under: S3 refuses a body that does not match it, and
/// a server that stores it unchecked (moto) returns it, so the SDK fails the read instead of
/// serving the wrong bytes.
#[tokio::test]
async fn s3_never_serves_a_file_that_does_not_match_its_hash() {
    let Some(h) = s3().await else { return };
    let claimed = ContentHash::of(b"what was hashed");
    let (_, src) = h.file("changed.txt", b"what is on disk now");
    match h.store.put_object(&claimed, &src).await {
        Err(StoreError::Backend(msg)) => {
            assert!(msg.contains("PutObject"), "{msg}");
            assert!(matches!(
                h.store.get_object(&claimed).await,
                Err(StoreError::MissingObject(_))
            ));
        }
        Err(e) => panic!("unexpected {e:?}"),
        Ok(_) => {
            let mut object = h.store.get_object(&claimed).await.unwrap();
            let mut bytes = Vec::new();
            let read = object.reader.read_to_end(&mut bytes).await;
            assert!(
                read.is_err(),
                "the wrong bytes were served: {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
    h.finish().await;
}

#[tokio::test]
async fn s3_a_missing_bucket_is_an_error_not_a_missing_object() {
    let Some(endpoint) = test_endpoint() else { return };
    let store = S3ArtifactStore::with_client(
        test_client(&endpoint),
        S3Location::new("cloudrunr-no-such-bucket", "x").unwrap(),
    );
    let hash = ContentHash::of(b"x");
    match store.get_object(&hash).await {
        Err(StoreError::Backend(msg)) => {
            assert!(msg.contains("NoSuchBucket"), "{msg}");
            assert!(msg.contains("s3://cloudrunr-no-such-bucket/x/objects/"), "{msg}");
            assert!(!msg.contains("Credential=") && !msg.contains("Signature="), "{msg}");
        }
        Err(e) => panic!("expected a backend error, got {e:?}"),
        Ok(_) => panic!("read from a missing bucket"),
    }
    assert!(matches!(
        store.get_manifest(&DeploymentId::generate()).await,
        Err(StoreError::Backend(_))
    ));
    assert!(matches!(store.object_count().await, Err(StoreError::Backend(_))));
}

/// `connect` reads the standard AWS chain, which these tests cannot set in-process (changing the
/// environment is unsafe): run [`connect_child`] in a child process with `AWS_*` set.
#[tokio::test]
async fn s3_connect_uses_the_standard_aws_chain() {
    let Some(endpoint) = test_endpoint() else { return };
    let client = test_client(&endpoint);
    let bucket = fresh_bucket(&client).await;
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap());
    child
        .args(["--exact", "tests::connect_child", "--ignored", "--nocapture"])
        .env("CLOUDRUNR_TEST_CONNECT_CHILD", &bucket)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent/cloudrunr-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/cloudrunr-test")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for var in [
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL_S3",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ] {
        child.env_remove(var);
    }
    let out = child.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{stderr}"
    );
    delete_bucket(&client, &bucket).await;
}

#[tokio::test]
#[ignore = "run by s3_connect_uses_the_standard_aws_chain, in a child process with AWS_* set"]
async fn connect_child() {
    let Ok(bucket) = std::env::var("CLOUDRUNR_TEST_CONNECT_CHILD") else {
        eprintln!("nothing to do: s3_connect_uses_the_standard_aws_chain runs this test with AWS_* set");
        return;
    };
    let options = S3Options {
        path_style: true,
        endpoint: None,
    };
    let location = ArtifactLocation::parse(&format!("s3://{bucket}/via-env")).unwrap();
    let store = crate::open(&location, options.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f");
    std::fs::write(&src, b"through the chain").unwrap();
    let hash = ContentHash::of(b"through the chain");
    assert!(store.put_object(&hash, &src).await.unwrap());
    assert_eq!(store.object_count().await.unwrap(), 1);

    // An explicit endpoint wins over AWS_ENDPOINT_URL.
    let explicit = S3Options {
        path_style: true,
        endpoint: std::env::var("AWS_ENDPOINT_URL").ok(),
    };
    let again = S3ArtifactStore::connect(S3Location::new(&bucket, "via-env").unwrap(), explicit)
        .await
        .unwrap();
    assert_eq!(again.get_object(&hash).await.unwrap().len, 17);
    let nowhere = S3Options {
        path_style: true,
        endpoint: Some("http://127.0.0.1:9".into()),
    };
    match S3ArtifactStore::connect(S3Location::new(&bucket, "").unwrap(), nowhere).await {
        Err(StoreError::Backend(msg)) => {
            println!("unreachable endpoint: {msg}");
            assert!(msg.contains(&format!("S3 bucket {bucket}: ")), "{msg}");
        }
        other => panic!("expected connect to fail, got {other:?}"),
    }

    // A bucket that does not exist fails at connect, saying so.
    match S3ArtifactStore::connect(S3Location::new("cloudrunr-no-such-bucket", "").unwrap(), options).await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("does not exist"), "{msg}"),
        other => panic!("expected connect to fail, got {other:?}"),
    }
}

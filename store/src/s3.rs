//! [`ArtifactStore`] in an S3 bucket (or any S3-compatible server), under a key prefix.
//!
//! Same layout as the local store: `<prefix>/objects/ab/<sha256>` and
//! `<prefix>/manifests/<deployment id>.json`. Objects are immutable, so `put_object` asks first
//! (HEAD) and uploads only what is missing; two uploads of one object race harmlessly (same bytes).

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Region, RequestChecksumCalculation, SharedHttpClient};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::ChecksumAlgorithm;
use aws_smithy_http_client::tls;
use platform::DeploymentId;
use platform::artifacts::{
    ArtifactStore, ContentHash, Manifest, ObjectReader, S3Location, StoreError, check_range, manifest_key, object_key,
};
use platform::settings::S3Options;
use std::fmt;
use std::io;
use std::path::Path;

/// The client settings every store uses, on top of the caller's configuration.
pub(super) fn tune(config: aws_sdk_s3::config::Builder, path_style: bool) -> aws_sdk_s3::config::Builder {
    config
        .force_path_style(path_style)
        // Uploads carry the SHA-256 the caller computed instead (see `put_object`), and
        // S3-compatible servers do not all understand the SDK's default aws-chunked uploads.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
}

/// The largest object a single PUT may upload.
const MAX_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// Region used when an explicit endpoint (an S3-compatible server) is configured without one.
const FALLBACK_REGION: &str = "us-east-1";

/// Objects and manifests in an S3 bucket. Cheap to clone (the SDK client is shared).
#[derive(Clone)]
pub struct S3ArtifactStore {
    client: Client,
    bucket: String,
    /// Empty, or the location's prefix followed by `/`.
    key_prefix: String,
    /// Keys per ListObjectsV2 page; `None` is the server's default (1000 on S3).
    page_size: Option<i32>,
}

impl fmt::Debug for S3ArtifactStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3ArtifactStore")
            .field("bucket", &self.bucket)
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

impl S3ArtifactStore {
    /// Connects with the standard AWS configuration chain (region, credentials, `AWS_ENDPOINT_URL`,
    /// profiles, web identity, container and instance credentials) and checks that the bucket is
    /// reachable (HeadBucket), so a wrong bucket or missing permission fails at startup.
    ///
    /// Without a configured region, an explicit endpoint (S3-compatible server) gets `us-east-1`;
    /// against AWS itself a region is required.
    pub async fn connect(location: S3Location, options: S3Options) -> Result<Self, StoreError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(Self::http_client());
        if let Some(endpoint) = &options.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;
        let mut config = tune(aws_sdk_s3::config::Builder::from(&sdk), options.path_style);
        if sdk.region().is_none() {
            if sdk.endpoint_url().is_none() {
                return Err(StoreError::Backend(
                    "no AWS region configured for the S3 artifact store: set AWS_REGION".into(),
                ));
            }
            config = config.region(Region::from_static(FALLBACK_REGION));
        }
        let store = Self::with_client(Client::from_conf(config.build()), location);
        store.check_bucket().await?;
        Ok(store)
    }

    /// A store using a client configured by the caller (tests, custom credentials). Nothing is
    /// checked until the first request.
    pub fn with_client(client: Client, location: S3Location) -> Self {
        let prefix = location.prefix.trim_matches('/');
        let key_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Self {
            client,
            bucket: location.bucket,
            key_prefix,
            page_size: None,
        }
    }

    /// Small list pages, so that tests exercise pagination.
    #[cfg(test)]
    pub(super) fn with_page_size(mut self, keys: i32) -> Self {
        self.page_size = Some(keys);
        self
    }

    /// The SDK's HTTP client: hyper with rustls on the `ring` provider (the SDK's default client
    /// is off, it would pull in aws-lc). Plain `http://` endpoints work too.
    pub fn http_client() -> SharedHttpClient {
        aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https()
    }

    /// The SDK client, e.g. to create the bucket in tests.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn check_bucket(&self) -> Result<(), StoreError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let why = match status_of(&e) {
                    Some(404) => "the bucket does not exist".to_owned(),
                    Some(403) => "access to the bucket is denied".to_owned(),
                    _ => describe(&e),
                };
                Err(StoreError::Backend(format!("S3 bucket {}: {why}", self.bucket)))
            }
        }
    }

    fn object_key(&self, hash: &ContentHash) -> String {
        format!("{}{}", self.key_prefix, object_key(hash))
    }

    fn manifest_key(&self, id: &DeploymentId) -> String {
        format!("{}{}", self.key_prefix, manifest_key(id))
    }

    /// The size of an object, by HEAD.
    async fn object_size(&self, hash: &ContentHash, key: &str) -> Result<u64, StoreError> {
        let head = match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(head) => head,
            Err(e) if is_missing(&e) => return Err(StoreError::MissingObject(hash.clone())),
            Err(e) => return Err(self.error("HeadObject", key, &e)),
        };
        head.content_length()
            .and_then(|l| u64::try_from(l).ok())
            .ok_or_else(|| StoreError::Backend(format!("S3 HeadObject s3://{}/{key}: no Content-Length", self.bucket)))
    }

    fn error<E>(&self, op: &str, key: &str, err: &SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        StoreError::Backend(format!("S3 {op} s3://{}/{key}: {}", self.bucket, describe(err)))
    }
}

fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// A one-line account of an SDK error: the service's code, status and message when it answered,
/// otherwise the whole cause chain (timeouts, connection errors). Request signatures and
/// credentials never appear in either.
fn describe<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let meta = ctx.err();
            format!(
                "{} (HTTP {}){}",
                meta.code().unwrap_or("error"),
                ctx.raw().status().as_u16(),
                meta.message()
                    .filter(|m| !m.is_empty())
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )
        }
        other => {
            // The cause chain on one line (DisplayErrorContext would add a Debug dump).
            let mut line = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                line.push_str(": ");
                line.push_str(&cause.to_string());
                source = cause.source();
            }
            line
        }
    }
}

/// Whether a GET/HEAD error means "no such key" (and not, say, "no such bucket").
fn is_missing<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(ctx) => match ctx.err().code() {
            Some("NoSuchKey" | "NotFound") => true,
            Some(_) => false,
            // HEAD answers have no body, hence no code: the status is all there is.
            None => ctx.raw().status().as_u16() == 404,
        },
        _ => false,
    }
}

#[async_trait]
impl ArtifactStore for S3ArtifactStore {
    async fn put_object(&self, hash: &ContentHash, src: &Path) -> Result<bool, StoreError> {
        let key = self.object_key(hash);
        match self.client.head_object().bucket(&self.bucket).key(&key).send().await {
            Ok(_) => return Ok(false),
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(self.error("HeadObject", &key, &e)),
        }
        let len = tokio::fs::metadata(src).await?.len();
        if len > MAX_PUT_BYTES {
            return Err(StoreError::Backend(format!(
                "object {hash} has {len} bytes, more than a single S3 PUT takes (5 GiB)"
            )));
        }
        let body = ByteStream::read_from()
            .path(src)
            .length(Length::Exact(len))
            .build()
            .await
            .map_err(io::Error::other)?;
        // S3 checks the upload against the SHA-256 it is stored under, so a file that changed
        // after it was hashed is refused rather than stored under the wrong name forever.
        let digest = hex::decode(hash.as_str()).expect("a content hash is hex");
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(body)
            .content_length(len as i64)
            .content_type("application/octet-stream")
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(aws_smithy_types::base64::encode(digest))
            .send()
            .await
            .map_err(|e| self.error("PutObject", &key, &e))?;
        Ok(true)
    }

    async fn get_object(&self, hash: &ContentHash) -> Result<ObjectReader, StoreError> {
        let key = self.object_key(hash);
        let resp = match self.client.get_object().bucket(&self.bucket).key(&key).send().await {
            Ok(resp) => resp,
            Err(e) if is_missing(&e) => return Err(StoreError::MissingObject(hash.clone())),
            Err(e) => return Err(self.error("GetObject", &key, &e)),
        };
        let len = resp
            .content_length()
            .and_then(|l| u64::try_from(l).ok())
            .ok_or_else(|| {
                StoreError::Backend(format!("S3 GetObject s3://{}/{key}: no Content-Length", self.bucket))
            })?;
        Ok(ObjectReader {
            len,
            reader: Box::pin(resp.body.into_async_read()),
        })
    }

    async fn get_object_range(&self, hash: &ContentHash, start: u64, len: u64) -> Result<ObjectReader, StoreError> {
        let key = self.object_key(hash);
        if len == 0 {
            // HTTP cannot ask for zero bytes: check the bounds against the object's size instead.
            let size = self.object_size(hash, &key).await?;
            check_range(hash, start, 0, size)?;
            return Ok(ObjectReader {
                len: 0,
                reader: Box::pin(tokio::io::empty()),
            });
        }
        let last = start
            .checked_add(len - 1)
            .ok_or_else(|| StoreError::RangeNotSatisfiable {
                hash: hash.clone(),
                start,
                end: u64::MAX,
                size: 0,
            })?;
        let resp = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .range(format!("bytes={start}-{last}"))
            .send()
            .await
        {
            Ok(resp) => resp,
            Err(e) if is_missing(&e) => return Err(StoreError::MissingObject(hash.clone())),
            Err(e) if status_of(&e) == Some(416) => {
                let size = self.object_size(hash, &key).await?;
                check_range(hash, start, len, size)?;
                return Err(self.error("GetObject", &key, &e));
            }
            Err(e) => return Err(self.error("GetObject", &key, &e)),
        };
        // S3 shortens a range that runs past the end: the total in Content-Range tells.
        let size = resp
            .content_range()
            .and_then(|r| r.rsplit_once('/'))
            .and_then(|(_, total)| total.parse::<u64>().ok());
        let sent = resp.content_length().and_then(|l| u64::try_from(l).ok());
        match (size, sent) {
            (Some(size), Some(sent)) if sent == len => {
                check_range(hash, start, len, size)?;
            }
            (Some(size), _) => {
                check_range(hash, start, len, size)?;
                return Err(StoreError::Backend(format!(
                    "S3 GetObject s3://{}/{key}: asked for {len} bytes, got {sent:?}",
                    self.bucket
                )));
            }
            _ => {
                return Err(StoreError::Backend(format!(
                    "S3 GetObject s3://{}/{key}: a ranged answer without Content-Range or Content-Length",
                    self.bucket
                )));
            }
        }
        Ok(ObjectReader {
            len,
            reader: Box::pin(resp.body.into_async_read()),
        })
    }

    async fn put_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let json = serde_json::to_vec(manifest).expect("manifests always serialize");
        let key = self.manifest_key(&manifest.deployment_id);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_length(json.len() as i64)
            .content_type("application/json")
            .body(ByteStream::from(json))
            .send()
            .await
            .map_err(|e| self.error("PutObject", &key, &e))?;
        Ok(())
    }

    async fn get_manifest(&self, id: &DeploymentId) -> Result<Option<Manifest>, StoreError> {
        let key = self.manifest_key(id);
        let resp = match self.client.get_object().bucket(&self.bucket).key(&key).send().await {
            Ok(resp) => resp,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(self.error("GetObject", &key, &e)),
        };
        let bytes = resp
            .body
            .collect()
            .await
            .map_err(|e| {
                StoreError::Backend(format!(
                    "S3 GetObject s3://{}/{key}: reading the body: {e}",
                    self.bucket
                ))
            })?
            .into_bytes();
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::CorruptManifest(id.clone(), e))
    }

    async fn delete_manifest(&self, id: &DeploymentId) -> Result<(), StoreError> {
        let key = self.manifest_key(id);
        // Deleting a missing key succeeds in S3, as it does locally.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.error("DeleteObject", &key, &e))?;
        Ok(())
    }

    async fn object_count(&self) -> Result<u64, StoreError> {
        let prefix = format!("{}objects/", self.key_prefix);
        let mut count = 0u64;
        let mut token: Option<String> = None;
        loop {
            let resp = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_max_keys(self.page_size)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.error("ListObjectsV2", &prefix, &e))?;
            count += resp.contents().len() as u64;
            match resp.next_continuation_token() {
                Some(next) if resp.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(count),
            }
        }
    }
}

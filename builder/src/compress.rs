//! Precompressed variants of deployed files, made once at upload time.
//!
//! The router then answers `Accept-Encoding: br` or `gzip` by sending a stored object — it never
//! compresses per request, so uploads can afford slow, thorough settings: brotli at quality 11
//! (lower for big files, see [`brotli_quality`]) and gzip at level 9. A variant is kept only
//! when it is meaningfully smaller than the file; small files, and formats that are compressed
//! already (images, woff/woff2, archives), are served as they are.
//!
//! The encoders need several MB per file for a moment, and glibc's allocator keeps freed memory
//! of that size once its mmap threshold has grown (one 19 MiB Argon2 hash at a log-in is enough):
//! a server that built a few sites in-process would idle 40 MB bigger. So a long-running server
//! compresses in a child process ([`Compression::Helper`]), whose memory goes when it exits.

use platform::artifacts::{ContentHash, Encodings, Variant};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncWriteExt;

/// The command of the `cloudrunr` binary that runs [`helper`].
pub const HELPER_COMMAND: &str = "compress-variants";

/// Files smaller than this are not compressed: a response this small fits in a packet or two
/// either way, and the variants would only cost store space.
pub const MIN_COMPRESS_BYTES: u64 = 1024;

/// A variant must save at least this many bytes...
const MIN_SAVED_BYTES: u64 = 64;
/// ...and at least 1/20 (5 %) of the file, or the file is served as it is.
const MIN_SAVED_FRACTION: u64 = 20;

/// Brotli's window sizes (log2): the format's smallest, and its default of 4 MiB, which every
/// browser decodes.
const BROTLI_MIN_LGWIN: u32 = 10;
const BROTLI_MAX_LGWIN: u32 = 22;

/// Whether files of this `Content-Type` are worth compressing: text, scripts, structured data,
/// SVG, WebAssembly and the font formats that are not compressed already (ttf/otf/eot; woff
/// and woff2 are).
pub fn is_compressible(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let is = |name: &str| essence.eq_ignore_ascii_case(name);
    let ends_with = |suffix: &str| {
        essence.len() >= suffix.len()
            && essence.as_bytes()[essence.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    essence.get(..5).is_some_and(|t| t.eq_ignore_ascii_case("text/"))
        || ends_with("+json")
        || ends_with("+xml")
        || [
            "application/javascript",
            "application/json",
            "application/xml",
            "application/wasm",
            "image/svg+xml",
            "font/ttf",
            "font/otf",
            "application/x-font-ttf",
            "application/x-font-opentype",
            "application/vnd.ms-fontobject",
        ]
        .into_iter()
        .any(is)
}

/// The brotli quality for a file of `size` bytes: 11, the best, for the files most pages load
/// (up to 256 KiB); 5 for bigger ones. Quality 11 runs at well under 1 MB/s and every deployment
/// compresses its files again, so a big bundle would hold an upload up for seconds; 5 runs at
/// 15–25 MB/s, with output 10–15 % bigger, and little memory. (Quality 9, in between in ratio,
/// always takes a 32 MB table, and memory taken by an upload stays with the process.)
fn brotli_quality(size: u64) -> i32 {
    if size <= 256 * 1024 { 11 } else { 5 }
}

/// Brotli's window for a file of `size` bytes: just big enough for the whole file (the format
/// needs 16 bytes more), from 1 KiB to the usual 4 MiB. A bigger window would not compress any
/// better, but the encoder's tables grow with it: for small files, 32 MB instead of a few
/// hundred KB at quality 11.
fn brotli_window(size: u64) -> i32 {
    let needed = size
        .saturating_add(16)
        .checked_next_power_of_two()
        .map_or(u64::BITS, u64::trailing_zeros);
    needed.clamp(BROTLI_MIN_LGWIN, BROTLI_MAX_LGWIN) as i32
}

/// A content coding the router can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Coding {
    /// `br` on the wire, as in `Content-Encoding`.
    #[serde(rename = "br")]
    Brotli,
    #[serde(rename = "gzip")]
    Gzip,
}

impl Coding {
    fn extension(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Gzip => "gz",
        }
    }
}

/// A variant written to a scratch file, ready to be stored as an object.
#[derive(Debug)]
pub struct Encoded {
    pub coding: Coding,
    pub path: PathBuf,
    pub variant: Variant,
}

impl Encoded {
    /// Records the variants in a manifest entry's form.
    pub fn encodings(encoded: &[Encoded]) -> Encodings {
        let mut encodings = Encodings::default();
        for e in encoded {
            let slot = match e.coding {
                Coding::Brotli => &mut encodings.br,
                Coding::Gzip => &mut encodings.gzip,
            };
            *slot = Some(e.variant.clone());
        }
        encodings
    }
}

/// Where an upload's variants are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compression {
    /// On threads of this process: for processes that end with their build (`cloudrunr build`,
    /// an ECS task) and for tests.
    InProcess,
    /// In a child process, `<program> compress-variants <scratch>`: for builds inside a
    /// long-running server, which keeps none of the encoders' memory (see the module docs).
    Helper(PathBuf),
}

impl Compression {
    /// A helper running this very program, which must have the [`HELPER_COMMAND`]; in-process
    /// when the program's path cannot be known.
    pub fn this_program() -> Self {
        match std::env::current_exe() {
            Ok(program) => Compression::Helper(program),
            Err(e) => {
                tracing::warn!("uploads will compress in-process: cannot find this program: {e}");
                Compression::InProcess
            }
        }
    }
}

/// A file to compress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub src: PathBuf,
    pub size: u64,
}

/// A variant as the helper reports it; its file is `<scratch>/<job index>.<br|gz>`.
#[derive(Debug, Serialize, Deserialize)]
struct Reported {
    coding: Coding,
    hash: ContentHash,
    size: u64,
}

/// Compresses every job's file into `scratch`, `threads` at a time; returns each job's variants
/// worth keeping, in job order.
pub async fn compress_all(
    compression: &Compression,
    jobs: Vec<Job>,
    scratch: &Path,
    threads: usize,
) -> io::Result<Vec<Vec<Encoded>>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    match compression {
        Compression::InProcess => {
            let scratch = scratch.to_path_buf();
            tokio::task::spawn_blocking(move || compress_here(&jobs, &scratch, threads))
                .await
                .map_err(io::Error::other)?
        }
        // The child uses all of its cores.
        Compression::Helper(program) => compress_in_child(program, &jobs, scratch).await,
    }
}

/// The helper's side: reads the jobs (JSON) from `input`, compresses them into `scratch` with one
/// thread per core, and writes what it kept (JSON) to `output`.
pub fn helper(scratch: &Path, input: impl Read, output: impl Write) -> io::Result<()> {
    let jobs: Vec<Job> = serde_json::from_reader(input).map_err(io::Error::other)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let encoded = compress_here(&jobs, scratch, threads)?;
    let reported: Vec<Vec<Reported>> = encoded
        .into_iter()
        .map(|variants| {
            variants
                .into_iter()
                .map(|e| Reported {
                    coding: e.coding,
                    hash: e.variant.hash,
                    size: e.variant.size,
                })
                .collect()
        })
        .collect();
    serde_json::to_writer(output, &reported).map_err(io::Error::other)
}

/// Runs the jobs on `threads` threads of this process.
fn compress_here(jobs: &[Job], scratch: &Path, threads: usize) -> io::Result<Vec<Vec<Encoded>>> {
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, io::Result<Vec<Encoded>>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.clamp(1, jobs.len().max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        done.push((i, compress_file(&job.src, job.size, scratch, &i.to_string())));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| io::Error::other("a compression thread panicked")))
            .collect::<io::Result<Vec<_>>>()
            .map(|done| done.into_iter().flatten().collect())
    })?;
    results.sort_by_key(|(i, _)| *i);
    if results.len() != jobs.len() {
        return Err(io::Error::other("a compression job was lost"));
    }
    results.into_iter().map(|(_, r)| r).collect()
}

/// Runs the jobs in a child process of `program` and reads back what it kept.
async fn compress_in_child(program: &Path, jobs: &[Job], scratch: &Path) -> io::Result<Vec<Vec<Encoded>>> {
    let mut child = tokio::process::Command::new(program)
        .arg(HELPER_COMMAND)
        .arg(scratch)
        // It needs nothing from the server's environment, secrets least of all.
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {}: {e}", program.display())))?;
    let input = serde_json::to_vec(jobs).map_err(io::Error::other)?;
    let mut stdin = child.stdin.take().ok_or_else(|| io::Error::other("no stdin"))?;
    // Written while the answer is read, so that neither side waits on a full pipe.
    let write = async move {
        stdin.write_all(&input).await?;
        stdin.shutdown().await
    };
    let (written, output) = tokio::join!(write, child.wait_with_output());
    let output = output?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "the compression helper failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    written?;
    let reported: Vec<Vec<Reported>> = serde_json::from_slice(&output.stdout).map_err(io::Error::other)?;
    if reported.len() != jobs.len() {
        return Err(io::Error::other(format!(
            "the compression helper answered for {} files of {}",
            reported.len(),
            jobs.len()
        )));
    }
    Ok(reported
        .into_iter()
        .enumerate()
        .map(|(i, variants)| {
            variants
                .into_iter()
                .map(|r| Encoded {
                    coding: r.coding,
                    path: scratch.join(format!("{i}.{}", r.coding.extension())),
                    variant: Variant {
                        hash: r.hash,
                        size: r.size,
                    },
                })
                .collect()
        })
        .collect())
}

/// Compresses the file at `src` (`size` bytes) with brotli and gzip into `scratch/<stem>.br`
/// and `.gz`; returns the variants worth keeping (a useless one's file is removed). Blocking:
/// run it on a blocking thread.
pub fn compress_file(src: &Path, size: u64, scratch: &Path, stem: &str) -> io::Result<Vec<Encoded>> {
    let mut kept = Vec::with_capacity(2);
    for coding in [Coding::Brotli, Coding::Gzip] {
        let dest = scratch.join(format!("{stem}.{}", coding.extension()));
        let variant = encode(src, &dest, coding, size)?;
        if worth_keeping(size, variant.size) {
            kept.push(Encoded {
                coding,
                path: dest,
                variant,
            });
        } else {
            std::fs::remove_file(&dest)?;
        }
    }
    Ok(kept)
}

/// Whether a variant of `encoded` bytes is worth serving instead of the `original` bytes.
fn worth_keeping(original: u64, encoded: u64) -> bool {
    let saved = original.saturating_sub(encoded);
    saved >= MIN_SAVED_BYTES && saved.saturating_mul(MIN_SAVED_FRACTION) >= original
}

/// Writes `src` encoded with `coding` to `dest`, hashing what is written.
fn encode(src: &Path, dest: &Path, coding: Coding, size: u64) -> io::Result<Variant> {
    let mut input = File::open(src)?;
    let mut out = HashingWriter::new(BufWriter::with_capacity(64 * 1024, File::create(dest)?));
    match coding {
        Coding::Brotli => {
            let params = brotli::enc::BrotliEncoderParams {
                quality: brotli_quality(size),
                lgwin: brotli_window(size),
                size_hint: usize::try_from(size).unwrap_or(usize::MAX),
                ..Default::default()
            };
            brotli::BrotliCompress(&mut input, &mut out, &params)?;
        }
        Coding::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::best());
            io::copy(&mut input, &mut gz)?;
            gz.finish()?;
        }
    }
    out.finish()
}

/// Passes bytes through to a file while hashing and counting them, so a variant's name and
/// size are known without reading it back.
struct HashingWriter {
    inner: BufWriter<File>,
    digest: Sha256,
    written: u64,
}

impl HashingWriter {
    fn new(inner: BufWriter<File>) -> Self {
        Self {
            inner,
            digest: Sha256::new(),
            written: 0,
        }
    }

    /// Flushes everything to the file and returns what was written.
    fn finish(mut self) -> io::Result<Variant> {
        self.inner.flush()?;
        Ok(Variant {
            hash: ContentHash::from_digest(self.digest),
            size: self.written,
        })
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(coding: Coding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Brotli => {
                brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out).unwrap();
            }
            Coding::Gzip => {
                flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
            }
        }
        out
    }

    /// Text that compresses the way source code does: repetitive, but not trivially.
    fn script(len: usize) -> Vec<u8> {
        let mut out = String::new();
        let mut i = 0u64;
        while out.len() < len {
            out.push_str(&format!(
                "export function handler{i}(event) {{ return render(event.target, {}); }}\n",
                i.wrapping_mul(2654435761) % 9973
            ));
            i += 1;
        }
        out.truncate(len);
        out.into_bytes()
    }

    /// Bytes with no structure to find.
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn compressible_types() {
        for yes in [
            "text/html; charset=utf-8",
            "text/css; charset=utf-8",
            "TEXT/plain",
            "text/javascript; charset=utf-8",
            "application/javascript",
            "application/json",
            "application/manifest+json; charset=utf-8",
            "application/ld+json",
            "application/xml",
            "application/rss+xml",
            "image/svg+xml; charset=utf-8",
            "application/wasm",
            "font/ttf",
            "font/otf",
            "application/vnd.ms-fontobject",
        ] {
            assert!(is_compressible(yes), "{yes}");
        }
        for no in [
            "image/png",
            "image/jpeg",
            "image/webp",
            "font/woff",
            "font/woff2",
            "application/zip",
            "application/gzip",
            "application/octet-stream",
            "video/mp4",
            "application/pdf",
            "",
            "text",
        ] {
            assert!(!is_compressible(no), "{no}");
        }
    }

    #[test]
    fn variants_decompress_to_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let original = script(40_000);
        let src = dir.path().join("app.js");
        std::fs::write(&src, &original).unwrap();
        let encoded = compress_file(&src, original.len() as u64, dir.path(), "0").unwrap();
        let codings: Vec<Coding> = encoded.iter().map(|e| e.coding).collect();
        assert_eq!(codings, [Coding::Brotli, Coding::Gzip]);
        for e in &encoded {
            let bytes = std::fs::read(&e.path).unwrap();
            assert_eq!(e.variant.size, bytes.len() as u64);
            assert_eq!(e.variant.hash, ContentHash::of(&bytes));
            assert!(
                bytes.len() < original.len() / 4,
                "{:?}: {} bytes",
                e.coding,
                bytes.len()
            );
            assert_eq!(decode(e.coding, &bytes), original, "{:?}", e.coding);
        }
        let encodings = Encoded::encodings(&encoded);
        assert_eq!(encodings.count(), 2);
        assert!(
            encodings.br.unwrap().size < encodings.gzip.unwrap().size,
            "brotli wins on text"
        );
    }

    #[tokio::test]
    async fn batches_keep_their_order_whatever_the_threads() {
        let dir = tempfile::tempdir().unwrap();
        let jobs: Vec<Job> = (0..9)
            .map(|i| {
                let src = dir.path().join(format!("f{i}.js"));
                // Every third file is incompressible.
                let bytes = if i % 3 == 2 {
                    noise(4000)
                } else {
                    script(3000 + i * 1000)
                };
                std::fs::write(&src, &bytes).unwrap();
                Job {
                    src,
                    size: bytes.len() as u64,
                }
            })
            .collect();
        let scratch = tempfile::tempdir().unwrap();
        let done = compress_all(&Compression::InProcess, jobs.clone(), scratch.path(), 4)
            .await
            .unwrap();
        assert_eq!(done.len(), 9);
        for (i, (job, variants)) in jobs.iter().zip(&done).enumerate() {
            let original = std::fs::read(&job.src).unwrap();
            assert_eq!(variants.len(), if i % 3 == 2 { 0 } else { 2 }, "file {i}");
            for e in variants {
                assert_eq!(e.path, scratch.path().join(format!("{i}.{}", e.coding.extension())));
                assert_eq!(decode(e.coding, &std::fs::read(&e.path).unwrap()), original, "file {i}");
            }
        }
        assert!(
            compress_all(&Compression::InProcess, Vec::new(), scratch.path(), 4)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_helper_speaks_json() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("app.js");
        let original = script(10_000);
        std::fs::write(&src, &original).unwrap();
        let jobs = vec![
            Job {
                src: src.clone(),
                size: original.len() as u64,
            },
            Job {
                src: src.clone(),
                size: original.len() as u64,
            },
        ];
        let scratch = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        helper(scratch.path(), &serde_json::to_vec(&jobs).unwrap()[..], &mut out).unwrap();
        let reported: Vec<Vec<Reported>> = serde_json::from_slice(&out).unwrap();
        assert_eq!(reported.len(), 2);
        for (i, variants) in reported.iter().enumerate() {
            let codings: Vec<Coding> = variants.iter().map(|r| r.coding).collect();
            assert_eq!(codings, [Coding::Brotli, Coding::Gzip]);
            for r in variants {
                let bytes = std::fs::read(scratch.path().join(format!("{i}.{}", r.coding.extension()))).unwrap();
                assert_eq!((ContentHash::of(&bytes), bytes.len() as u64), (r.hash.clone(), r.size));
                assert_eq!(decode(r.coding, &bytes), original);
            }
        }
        assert!(String::from_utf8(out).unwrap().contains("\"coding\":\"br\""));
        // Garbage in: an error, not a panic.
        assert!(helper(scratch.path(), &b"not json"[..], &mut Vec::new()).is_err());
    }

    #[tokio::test]
    async fn a_helper_that_fails_is_an_error() {
        let scratch = tempfile::tempdir().unwrap();
        let job = Job {
            src: scratch.path().join("x"),
            size: 2000,
        };
        for program in ["/nonexistent/cloudrunr", "/bin/false"] {
            let helper = Compression::Helper(program.into());
            let err = compress_all(&helper, vec![job.clone()], scratch.path(), 1)
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains(program) || err.to_string().contains("helper failed"),
                "{err}"
            );
        }
    }

    #[test]
    fn incompressible_files_get_no_variant() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("random.js");
        std::fs::write(&src, noise(20_000)).unwrap();
        let encoded = compress_file(&src, 20_000, dir.path(), "1").unwrap();
        assert!(encoded.is_empty(), "{encoded:?}");
        // The scratch files of useless variants are gone.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["random.js"]);
    }

    #[test]
    fn savings_must_be_meaningful() {
        assert!(worth_keeping(10_000, 9_500));
        assert!(!worth_keeping(10_000, 9_501), "less than 5 %");
        assert!(worth_keeping(1_280, 1_216));
        assert!(!worth_keeping(1_200, 1_140), "5 % but less than 64 bytes");
        assert!(!worth_keeping(1_000, 1_000));
        assert!(!worth_keeping(1_000, 2_000), "bigger");
    }

    #[test]
    fn big_files_trade_ratio_for_time() {
        assert_eq!(brotli_quality(1024), 11);
        assert_eq!(brotli_quality(256 << 10), 11);
        assert_eq!(brotli_quality((256 << 10) + 1), 5);
        assert_eq!(brotli_quality(100 << 20), 5);
    }

    #[test]
    fn the_window_fits_the_file() {
        assert_eq!(brotli_window(0), 10);
        assert_eq!(brotli_window(1000), 10);
        assert_eq!(brotli_window(1008), 10);
        assert_eq!(brotli_window(1009), 11);
        assert_eq!(brotli_window(150_000), 18);
        assert_eq!(brotli_window((1 << 18) - 16), 18);
        assert_eq!(brotli_window(1 << 18), 19);
        assert_eq!(brotli_window(100 << 20), 22);
        assert_eq!(brotli_window(u64::MAX), 22);
    }
}

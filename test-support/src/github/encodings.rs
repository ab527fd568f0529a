//! Keys, JWTs and small encodings.

use serde_json::{Value, json};
use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

pub(super) struct AppKeys {
    pub(super) private_pem: String,
    pub(super) public_pem: String,
}

/// The test App's RSA key: made with the `openssl` CLI once per process.
pub(super) fn app_keys() -> &'static AppKeys {
    static KEYS: OnceLock<AppKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let private_pem = run_openssl(&["genrsa", "-traditional", "2048"], b"");
        let public_pem = run_openssl(&["rsa", "-pubout"], private_pem.as_bytes());
        AppKeys {
            private_pem,
            public_pem,
        }
    })
}

fn run_openssl(args: &[&str], stdin: &[u8]) -> String {
    let out = run_openssl_bytes(args, stdin);
    String::from_utf8(out).expect("openssl output is UTF-8")
}

fn run_openssl_bytes(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("the GitHub mock needs the openssl CLI: {e}"));
    child
        .stdin
        .take()
        .expect("openssl stdin")
        .write_all(stdin)
        .expect("write to openssl");
    let out = child.wait_with_output().expect("wait for openssl");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Signs `header.claims` with RS256 (`openssl dgst -sha256 -sign`).
pub(super) fn sign_rs256(private_pem: &str, header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        base64url_encode(header.to_string().as_bytes()),
        base64url_encode(claims.to_string().as_bytes())
    );
    let dir = tempfile::Builder::new()
        .prefix("mock-github-sign-")
        .tempdir()
        .expect("temp dir for signing");
    let key = dir.path().join("key.pem");
    std::fs::File::create(&key)
        .and_then(|mut f| f.write_all(private_pem.as_bytes()))
        .expect("write signing key");
    let key = key.to_str().expect("temp path is UTF-8");
    let signature = run_openssl_bytes(&["dgst", "-sha256", "-sign", key], signing_input.as_bytes());
    format!("{signing_input}.{}", base64url_encode(&signature))
}

/// JWTs whose signature `openssl` already accepted (the key is one per process).
pub(super) fn verified_jwts() -> &'static Mutex<HashSet<String>> {
    static VERIFIED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    VERIFIED.get_or_init(|| Mutex::new(HashSet::new()))
}

pub(super) fn numeric_claim(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// `YYYY-MM-DDTHH:MM:SSZ`
pub(super) fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub(super) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish()
}

fn random_from(alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| alphabet[(random_u64() % alphabet.len() as u64) as usize] as char)
        .collect()
}

pub(super) fn random_alnum(len: usize) -> String {
    random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", len)
}

pub(super) fn random_hex(len: usize) -> String {
    random_from(b"0123456789abcdef", len)
}

/// A stable numeric id for a name (account and user ids).
pub(super) fn stable_id(name: &str) -> u64 {
    // FNV-1a, folded into a plausible GitHub id range.
    let hash = name
        .to_ascii_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    1_000_000 + hash % 9_000_000
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Unpadded base64url, as JWTs use.
fn base64url_encode(bytes: &[u8]) -> String {
    base64_encode(bytes, true)
}

/// Base64: `url` selects the URL-safe alphabet without padding, else the standard one with padding.
fn base64_encode(bytes: &[u8], url: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            let c = B64[(n >> (18 - 6 * i) & 63) as usize];
            out.push(match c {
                b'+' if url => '-',
                b'/' if url => '_',
                c => c as char,
            });
        }
        if !url {
            out.extend(std::iter::repeat_n('=', 3 - chunk.len()));
        }
    }
    out
}

/// GitHub's legacy global node id, e.g. `MDg6Q2hlY2tSdW40` for check run 4: base64 of `08:CheckRun4`.
pub(super) fn node_id(kind: &str, id: u64) -> Value {
    json!(base64_encode(format!("0{}:{kind}{id}", kind.len()).as_bytes(), false))
}

/// Decodes base64 (`url`: the URL-safe alphabet, unpadded, as JWTs use; else standard, padding allowed).
pub(super) fn base64_decode(s: &str, url: bool) -> Option<Vec<u8>> {
    let s = if url { s } else { s.trim_end_matches('=') };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' if url => 62,
            b'_' if url => 63,
            b'+' if !url => 62,
            b'/' if !url => 63,
            _ => return None,
        };
        buf = buf << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    (bits < 6).then_some(out)
}

pub(super) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `application/x-www-form-urlencoded` pairs (also query strings).
pub(super) fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

//! Verifying that a webhook delivery really comes from GitHub.
//!
//! GitHub signs every delivery of a webhook that has a secret with an HMAC-SHA256 of the raw request
//! body, sent as `X-Hub-Signature-256: sha256=<64 lowercase hex digits>`. Until that signature has
//! been checked the body is attacker-controlled, so this module works on the raw bytes only and never
//! parses them: the caller verifies first and hands the body to [`crate::events::parse`] afterwards.
//!
//! The legacy `X-Hub-Signature: sha1=…` header is never trusted (SHA-1 HMACs are still unbroken, but
//! GitHub sends the SHA-256 one alongside it, so accepting SHA-1 would only add a weaker path in).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// GitHub's cap on webhook payloads.
///
/// GitHub does not deliver payloads larger than 25 MB, so a larger body cannot be a genuine delivery:
/// the HTTP handler should refuse it before buffering it, and certainly before computing an HMAC over it.
pub const MAX_PAYLOAD_BYTES: usize = 25 * 1024 * 1024;

/// The prefix GitHub puts before the hex digest in `X-Hub-Signature-256`.
const SHA256_PREFIX: &str = "sha256=";

/// Length in bytes of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Why a delivery's signature was not accepted.
///
/// The variants are distinct so that the handler can log something actionable (a webhook without a
/// secret configured on GitHub's side looks very different from a forged request), but every one of
/// them means the same thing for the request: reject it without looking at the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header at all: typically the webhook has no secret configured on GitHub's side.
    #[error("no X-Hub-Signature-256 header: the webhook must be configured with a secret")]
    Missing,
    /// Only the legacy SHA-1 header was sent; it is deliberately not accepted.
    #[error("only an X-Hub-Signature (SHA-1) header was sent; X-Hub-Signature-256 (SHA-256) is required")]
    Sha1Only,
    /// The header is not `sha256=` followed by 64 hex digits.
    #[error("malformed X-Hub-Signature-256 header: expected `sha256=` followed by 64 hex digits")]
    Malformed,
    /// The header is well-formed but is not the HMAC of this body with our secret.
    #[error("X-Hub-Signature-256 does not match the body: wrong webhook secret, or a forged or altered request")]
    Mismatch,
}

/// Checks `X-Hub-Signature-256: sha256=<hex>` (HMAC-SHA256 of the raw body with the webhook secret),
/// in constant time (hmac's verify_slice). `sha256_header` is the header value if present, `has_sha1`
/// whether an `X-Hub-Signature` (sha1) header was present (so a request signed only with SHA-1 is
/// reported as Sha1Only, not Missing). Never parses the body. The whole body at once: see
/// [`Verifier`] for one that streams in.
pub fn verify(secret: &[u8], body: &[u8], sha256_header: Option<&str>, has_sha1: bool) -> Result<(), SignatureError> {
    let mut verifier = Verifier::new(secret, sha256_header, has_sha1)?;
    verifier.update(body).map_err(|_| SignatureError::Mismatch)?;
    verifier.finish().map(drop)
}

/// A delivery's signature, checked as its body comes in: the header is checked before any of the
/// body is read, each chunk goes into the HMAC as it arrives, and a body past
/// [`MAX_PAYLOAD_BYTES`] is refused at the chunk that crosses it.
///
/// [`Verifier::new`] rejects what needs no body to reject: a missing, SHA-1-only or malformed
/// header (see [`SignatureError`]) — the header must be exactly `sha256=` and 64 hex digits (either
/// case: GitHub sends lowercase, but the digits denote the same bytes); anything else is
/// [`SignatureError::Malformed`] rather than a mismatch, so that a proxy mangling the header is
/// distinguishable from a wrong secret — and an empty `secret`, which never verifies
/// ([`SignatureError::Mismatch`]): an HMAC keyed with the empty string can be computed by anyone,
/// so accepting it would let a misconfigured server trust forged deliveries. Configuration should
/// refuse an empty secret up front; this is the fail-closed backstop. Only the final comparison
/// with the expected tag needs to be constant-time: parsing the header reveals nothing about the
/// secret.
pub struct Verifier {
    mac: HmacSha256,
    tag: [u8; TAG_LEN],
    len: usize,
}

/// A body past GitHub's [`MAX_PAYLOAD_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("webhook payloads are at most 25 MB")]
pub struct PayloadTooLarge;

impl Verifier {
    pub fn new(secret: &[u8], sha256_header: Option<&str>, has_sha1: bool) -> Result<Self, SignatureError> {
        let Some(header) = sha256_header else {
            return Err(if has_sha1 {
                SignatureError::Sha1Only
            } else {
                SignatureError::Missing
            });
        };
        let digits = header.strip_prefix(SHA256_PREFIX).ok_or(SignatureError::Malformed)?;
        // Checking the length first keeps decoding to a fixed-size buffer and rejects a truncated
        // tag as malformed instead of letting it reach the comparison.
        if digits.len() != 2 * TAG_LEN {
            return Err(SignatureError::Malformed);
        }
        let mut tag = [0u8; TAG_LEN];
        hex::decode_to_slice(digits, &mut tag).map_err(|_| SignatureError::Malformed)?;
        if secret.is_empty() {
            return Err(SignatureError::Mismatch);
        }
        let mac = keyed(secret, b"").ok_or(SignatureError::Mismatch)?;
        Ok(Self { mac, tag, len: 0 })
    }

    /// Takes the next chunk of the body.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), PayloadTooLarge> {
        self.len = self.len.saturating_add(chunk.len());
        if self.len > MAX_PAYLOAD_BYTES {
            return Err(PayloadTooLarge);
        }
        self.mac.update(chunk);
        Ok(())
    }

    /// Whether the body, now complete, is the one signed; its signature (lowercase hex) if so,
    /// which names this body among deliveries (one signature per body under one secret).
    pub fn finish(self) -> Result<String, SignatureError> {
        self.mac.verify_slice(&self.tag).map_err(|_| SignatureError::Mismatch)?;
        Ok(hex::encode(self.tag))
    }
}

/// The header value GitHub would send for `body` (for tests and tools).
///
/// Unlike [`verify`] this accepts an empty secret, because it only describes what GitHub would compute.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let digest = match keyed(secret, body) {
        Some(mac) => hex::encode(mac.finalize().into_bytes()),
        // Unreachable in practice (HMAC takes keys of any length). A header without a digest is what
        // `verify` rejects as malformed, so it is the safe thing to produce if it ever happened.
        None => String::new(),
    };
    format!("{SHA256_PREFIX}{digest}")
}

/// An HMAC-SHA256 over `body` keyed with `secret`.
///
/// `new_from_slice` cannot fail for HMAC (any key length is valid), but its signature says it can, and
/// this module must not panic, so the impossible case is an `Option` the callers turn into a rejection.
fn keyed(secret: &[u8], body: &[u8]) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(body);
    Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    /// The worked example from GitHub's "Validating webhook deliveries" documentation: an independent
    /// vector, so `sign` is not only checked against itself.
    const GITHUB_EXAMPLE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn sign_matches_githubs_documented_example() {
        assert_eq!(sign(SECRET, BODY), GITHUB_EXAMPLE);
    }

    #[test]
    fn githubs_documented_example_verifies() {
        assert_eq!(verify(SECRET, BODY, Some(GITHUB_EXAMPLE), false), Ok(()));
        // A SHA-1 header alongside a valid SHA-256 one changes nothing.
        assert_eq!(verify(SECRET, BODY, Some(GITHUB_EXAMPLE), true), Ok(()));
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let header = sign(b"s3cret", b"{\"zen\":\"hi\"}");
        assert!(header.starts_with("sha256="));
        assert_eq!(header.len(), "sha256=".len() + 64);
        assert_eq!(verify(b"s3cret", b"{\"zen\":\"hi\"}", Some(&header), false), Ok(()));
    }

    #[test]
    fn tampered_body_is_a_mismatch() {
        assert_eq!(
            verify(SECRET, b"Hello, World?", Some(GITHUB_EXAMPLE), false),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, b"Hello, World!\n", Some(GITHUB_EXAMPLE), false),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, b"", Some(GITHUB_EXAMPLE), false),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn wrong_secret_is_a_mismatch() {
        assert_eq!(
            verify(b"another secret", BODY, Some(GITHUB_EXAMPLE), false),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn one_flipped_digit_is_a_mismatch() {
        let mut flipped = GITHUB_EXAMPLE.to_owned();
        flipped.pop();
        flipped.push('6'); // the real last digit is '7'
        assert_eq!(
            verify(SECRET, BODY, Some(&flipped), false),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_header_is_missing() {
        assert_eq!(verify(SECRET, BODY, None, false), Err(SignatureError::Missing));
    }

    #[test]
    fn sha1_only_is_reported_as_such() {
        assert_eq!(verify(SECRET, BODY, None, true), Err(SignatureError::Sha1Only));
    }

    #[test]
    fn empty_body_signed_verifies_and_unsigned_is_missing() {
        let header = sign(SECRET, b"");
        assert_eq!(verify(SECRET, b"", Some(&header), false), Ok(()));
        assert_eq!(verify(SECRET, b"", None, false), Err(SignatureError::Missing));
    }

    #[test]
    fn empty_secret_never_verifies() {
        // HMAC-SHA256 with an empty key over an empty body: anyone can compute it, which is the point.
        let header = "sha256=b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad";
        assert_eq!(sign(b"", b""), header);
        assert_eq!(verify(b"", b"", Some(header), false), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(b"", BODY, Some(&sign(b"", BODY)), false),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let upper = format!("sha256={}", GITHUB_EXAMPLE["sha256=".len()..].to_ascii_uppercase());
        assert_ne!(upper, GITHUB_EXAMPLE);
        assert_eq!(verify(SECRET, BODY, Some(&upper), false), Ok(()));
    }

    #[test]
    fn malformed_headers_are_malformed() {
        let digits = &GITHUB_EXAMPLE["sha256=".len()..];
        let cases = [
            String::new(),
            "sha256=".to_owned(),
            digits.to_owned(),                        // no prefix
            format!("sha512={digits}"),               // wrong algorithm
            format!("sha1={digits}"),                 // wrong algorithm
            format!("SHA256={digits}"),               // GitHub's prefix is lowercase
            format!("sha256 {digits}"),               // wrong separator
            format!(" sha256={digits}"),              // stray whitespace
            format!("sha256={digits} "),              // stray whitespace
            format!("sha256={}", &digits[1..]),       // odd length
            format!("sha256={}", &digits[2..]),       // one byte short
            format!("sha256={digits}00"),             // one byte long
            format!("sha256={}zz", &digits[2..]),     // not hex
            format!("sha256={}", "g".repeat(64)),     // not hex, right length
            format!("sha256={}é", &digits[2..]),      // non-ASCII, right byte length
            format!("sha256={digits}{digits}"),       // two digests
            format!("sha256={}", "0".repeat(10_000)), // absurdly long
        ];
        for header in &cases {
            assert_eq!(
                verify(SECRET, BODY, Some(header), false),
                Err(SignatureError::Malformed),
                "header {header:?}"
            );
            assert_eq!(
                verify(SECRET, BODY, Some(header), true),
                Err(SignatureError::Malformed),
                "header {header:?}"
            );
        }
    }

    #[test]
    fn a_body_verified_in_chunks_is_the_same_as_whole() {
        let mut v = Verifier::new(SECRET, Some(GITHUB_EXAMPLE), false).unwrap();
        for chunk in BODY.chunks(3) {
            v.update(chunk).unwrap();
        }
        assert_eq!(v.finish().unwrap(), &GITHUB_EXAMPLE["sha256=".len()..]);
        let mut v = Verifier::new(SECRET, Some(GITHUB_EXAMPLE), false).unwrap();
        v.update(&BODY[..5]).unwrap();
        assert_eq!(v.finish(), Err(SignatureError::Mismatch), "a body cut short");
    }

    #[test]
    fn the_header_is_judged_before_any_body() {
        assert_eq!(Verifier::new(SECRET, None, false).err(), Some(SignatureError::Missing));
        assert_eq!(Verifier::new(SECRET, None, true).err(), Some(SignatureError::Sha1Only));
        assert_eq!(
            Verifier::new(SECRET, Some("sha256=zz"), false).err(),
            Some(SignatureError::Malformed)
        );
        assert_eq!(
            Verifier::new(b"", Some(GITHUB_EXAMPLE), false).err(),
            Some(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_body_past_githubs_cap_is_refused_at_the_chunk_that_crosses_it() {
        let mut v = Verifier::new(SECRET, Some(GITHUB_EXAMPLE), false).unwrap();
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..25 {
            v.update(&chunk).unwrap();
        }
        assert_eq!(v.update(b"x"), Err(PayloadTooLarge));
    }

    #[test]
    fn errors_have_distinct_readable_messages() {
        let all = [
            SignatureError::Missing,
            SignatureError::Sha1Only,
            SignatureError::Malformed,
            SignatureError::Mismatch,
        ];
        let messages: Vec<String> = all.iter().map(ToString::to_string).collect();
        for (i, m) in messages.iter().enumerate() {
            assert!(m.contains("X-Hub-Signature"), "{m}");
            assert!(!messages[..i].contains(m), "duplicate message {m}");
        }
    }
}

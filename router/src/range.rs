//! Range requests (RFC 9110 §14): one byte range of a file's identity representation.
//!
//! Only what clients use is supported: a single range — `bytes=a-b`, `bytes=a-`, `bytes=-n` —
//! optionally conditional on `If-Range` with the file's ETag. Anything else (several ranges,
//! another unit, a malformed header) is ignored and the whole file is sent, as the RFC allows.

use axum::http::HeaderMap;
use axum::http::header::{IF_RANGE, RANGE};

/// What a `Range` header asks of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ranged {
    /// No usable range: send the whole file (200).
    Full,
    /// Bytes `start..end` (end exclusive, never empty): 206.
    Part { start: u64, end: u64 },
    /// The range lies outside the file: 416.
    Unsatisfiable,
}

/// Evaluates `Range` and `If-Range` for a file of `size` bytes whose strong ETag is `etag`.
///
/// `If-Range` makes the range apply only while the client holds the current bytes: it must be
/// exactly our ETag (a weak tag never matches); a date cannot match either, since files carry no
/// `Last-Modified`. A mismatch sends the whole file.
pub(crate) fn evaluate(headers: &HeaderMap, size: u64, etag: &[u8]) -> Ranged {
    let mut ranges = headers.get_all(RANGE).iter();
    let (Some(range), None) = (ranges.next(), ranges.next()) else {
        return Ranged::Full;
    };
    if let Some(condition) = headers.get(IF_RANGE)
        && condition.as_bytes().trim_ascii() != etag
    {
        return Ranged::Full;
    }
    range.to_str().map_or(Ranged::Full, |r| parse(r, size))
}

/// Parses one `Range` value against a file of `size` bytes.
fn parse(value: &str, size: u64) -> Ranged {
    let Some((unit, set)) = value.split_once('=') else {
        return Ranged::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranged::Full;
    }
    let spec = set.trim();
    if spec.contains(',') {
        // Several ranges would need multipart/byteranges: the whole file serves them too.
        return Ranged::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ranged::Full;
    };
    match (position(first), position(last)) {
        // `-n`: the last n bytes (all of them if the file is shorter).
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || size == 0 {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part {
                    start: size - suffix.min(size),
                    end: size,
                }
            }
        }
        // `a-`: from a to the end.
        (Some(start), None) if last.is_empty() => within(start, size, size),
        // `a-b`: b is inclusive, and may run past the end.
        (Some(start), Some(last)) if last >= start => within(start, last.saturating_add(1).min(size), size),
        _ => Ranged::Full,
    }
}

fn within(start: u64, end: u64, size: u64) -> Ranged {
    if start >= size {
        Ranged::Unsatisfiable
    } else {
        Ranged::Part { start, end }
    }
}

/// A byte position: one or more digits. Positions too big for a u64 saturate, which gives the
/// same answer as the exact number would (past the end of any file).
fn position(raw: &str) -> Option<u64> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        raw.bytes()
            .fold(0u64, |n, b| n.saturating_mul(10).saturating_add(u64::from(b - b'0'))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn part(start: u64, end: u64) -> Ranged {
        Ranged::Part { start, end }
    }

    #[test]
    fn single_ranges() {
        use Ranged::*;
        assert_eq!(parse("bytes=0-0", 100), part(0, 1));
        assert_eq!(parse("bytes=0-99", 100), part(0, 100));
        assert_eq!(parse("bytes=10-19", 100), part(10, 20));
        assert_eq!(parse("bytes=90-200", 100), part(90, 100), "clipped to the end");
        assert_eq!(parse("bytes=99-99", 100), part(99, 100));
        assert_eq!(parse("bytes=50-", 100), part(50, 100));
        assert_eq!(parse("bytes=0-", 100), part(0, 100));
        assert_eq!(parse("bytes=-10", 100), part(90, 100));
        assert_eq!(parse("bytes=-100", 100), part(0, 100));
        assert_eq!(
            parse("bytes=-1000", 100),
            part(0, 100),
            "a longer suffix is the whole file"
        );
        assert_eq!(parse("Bytes=1-2", 100), part(1, 3), "the unit is case-insensitive");
        assert_eq!(parse("bytes= 1-2 ", 100), part(1, 3));
        assert_eq!(parse("bytes=0-99999999999999999999999", 100), part(0, 100));
        assert_eq!(parse("bytes=-99999999999999999999999", 100), part(0, 100));
        assert_eq!(parse("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(parse("bytes=99999999999999999999999-", 100), Unsatisfiable);
        assert_eq!(parse("bytes=-0", 100), Unsatisfiable);
        assert_eq!(
            parse("bytes=0-", 0),
            Unsatisfiable,
            "an empty file has no bytes to range"
        );
        assert_eq!(parse("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn what_is_ignored() {
        for value in [
            "bytes=0-1,5-6",
            "bytes=0-1, 5-6",
            "bytes=0-1,",
            "items=0-1",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=5",
            "bytes=a-b",
            "bytes=1-a",
            "bytes=+1-2",
            "bytes=-+5",
            "bytes=5-1",
            "bytes=1 - 2",
            "bytes=0x10-",
            "=0-1",
        ] {
            assert_eq!(parse(value, 100), Ranged::Full, "{value:?}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn if_range_needs_the_exact_strong_etag() {
        let etag = b"\"abc\"";
        let ranged = |pairs: &[(&'static str, &str)]| evaluate(&headers(pairs), 100, etag);
        assert_eq!(ranged(&[]), Ranged::Full);
        assert_eq!(ranged(&[("range", "bytes=0-9")]), part(0, 10));
        assert_eq!(ranged(&[("range", "bytes=0-9"), ("if-range", "\"abc\"")]), part(0, 10));
        assert_eq!(ranged(&[("range", "bytes=0-9"), ("if-range", "\"old\"")]), Ranged::Full);
        assert_eq!(
            ranged(&[("range", "bytes=0-9"), ("if-range", "W/\"abc\"")]),
            Ranged::Full
        );
        assert_eq!(
            ranged(&[("range", "bytes=0-9"), ("if-range", "Wed, 21 Oct 2015 07:28:00 GMT")]),
            Ranged::Full
        );
        // A mismatch wins over an unsatisfiable range: the client gets the new file.
        assert_eq!(
            ranged(&[("range", "bytes=500-"), ("if-range", "\"old\"")]),
            Ranged::Full
        );
        assert_eq!(ranged(&[("range", "bytes=500-")]), Ranged::Unsatisfiable);
        // If-Range alone means nothing.
        assert_eq!(ranged(&[("if-range", "\"abc\"")]), Ranged::Full);
        // Two Range headers are as ambiguous as two ranges.
        assert_eq!(ranged(&[("range", "bytes=0-1"), ("range", "bytes=2-3")]), Ranged::Full);
    }
}

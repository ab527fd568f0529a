//! Choosing a file's representation from `Accept-Encoding` (RFC 9110 §12.5.3).

use axum::http::HeaderMap;
use axum::http::header::ACCEPT_ENCODING;
use platform::artifacts::Encodings;

/// A content coding the router can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Identity,
    Brotli,
    Gzip,
}

/// A quality value in thousandths (`q=0.5` is 500): qvalues have at most three decimals.
type Quality = u16;

/// The lowest quality that is still acceptable.
const LEAST: Quality = 1;

/// What a request's `Accept-Encoding` says of the codings the router knows. `None` is "not
/// mentioned".
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Accepted {
    br: Option<Quality>,
    gzip: Option<Quality>,
    identity: Option<Quality>,
    any: Option<Quality>,
}

/// The coding to answer with, among the file's variants and the file itself.
///
/// The highest quality wins; at equal quality brotli beats gzip beats identity (smaller first).
/// A coding not named falls under `*`, or is not acceptable. Identity not named (nor `*`) is
/// acceptable, as RFC 9110 says, but least preferred: a client that lists codings wants one of
/// them. Only `identity;q=0`, or `*;q=0` without an `identity` entry, refuses it. Without any
/// `Accept-Encoding` the file goes as is: clients that say nothing get the bytes as they are.
/// When nothing at all is acceptable the file is sent as is too, which RFC 9110 allows.
pub(crate) fn choose(headers: &HeaderMap, variants: &Encodings) -> Coding {
    if variants.is_empty() {
        return Coding::Identity;
    }
    let Some(accepted) = parse(headers) else {
        return Coding::Identity;
    };
    let br = variants.br.as_ref().and(accepted.br.or(accepted.any)).unwrap_or(0);
    let gzip = variants.gzip.as_ref().and(accepted.gzip.or(accepted.any)).unwrap_or(0);
    let identity = accepted.identity.or(accepted.any).unwrap_or(LEAST);
    let best = br.max(gzip).max(identity);
    if best == 0 {
        Coding::Identity
    } else if br == best {
        Coding::Brotli
    } else if gzip == best {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

/// Reads every `Accept-Encoding` header; `None` when there is none. Elements that cannot be
/// understood (a bad qvalue) are skipped; codings the router does not know are ignored.
fn parse(headers: &HeaderMap) -> Option<Accepted> {
    let mut values = headers.get_all(ACCEPT_ENCODING).iter().peekable();
    values.peek()?;
    let mut accepted = Accepted::default();
    for element in values.filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')) {
        let mut parts = element.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        if coding.is_empty() {
            continue;
        }
        let mut quality = Some(1000);
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("q") {
                quality = parse_quality(value.trim());
            }
        }
        let Some(quality) = quality else { continue };
        let slot = if coding.eq_ignore_ascii_case("br") {
            &mut accepted.br
        } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            &mut accepted.gzip
        } else if coding.eq_ignore_ascii_case("identity") {
            &mut accepted.identity
        } else if coding == "*" {
            &mut accepted.any
        } else {
            continue;
        };
        // Named twice: the more generous mention counts.
        *slot = Some(slot.map_or(quality, |q| q.max(quality)));
    }
    Some(accepted)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_quality(raw: &str) -> Option<Quality> {
    let (whole, fraction) = raw.split_once('.').unwrap_or((raw, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |acc, b| acc * 10 + Quality::from(b - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use platform::artifacts::{ContentHash, Variant};

    fn variant() -> Option<Variant> {
        Some(Variant {
            hash: ContentHash::of(b"v"),
            size: 1,
        })
    }

    fn both() -> Encodings {
        Encodings {
            br: variant(),
            gzip: variant(),
        }
    }

    fn pick(values: &[&str], variants: &Encodings) -> Coding {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        choose(&headers, variants)
    }

    #[test]
    fn browsers_get_brotli_then_gzip() {
        use Coding::*;
        let both = both();
        assert_eq!(pick(&["gzip, deflate, br, zstd"], &both), Brotli);
        assert_eq!(pick(&["gzip, deflate"], &both), Gzip);
        assert_eq!(pick(&["br"], &both), Brotli);
        assert_eq!(pick(&["gzip"], &both), Gzip);
        assert_eq!(pick(&["x-gzip"], &both), Gzip);
        assert_eq!(
            pick(&["BR", "GZip"], &both),
            Brotli,
            "case-insensitive, several headers"
        );
        let gzip_only = Encodings {
            br: None,
            gzip: variant(),
        };
        assert_eq!(pick(&["br, gzip"], &gzip_only), Gzip);
        assert_eq!(pick(&["br"], &gzip_only), Identity);
    }

    #[test]
    fn qualities_are_respected() {
        use Coding::*;
        let both = both();
        assert_eq!(pick(&["br;q=0, gzip"], &both), Gzip);
        assert_eq!(pick(&["br;q=0.5, gzip;q=0.8"], &both), Gzip);
        assert_eq!(pick(&["br;q=0.8, gzip;q=0.8"], &both), Brotli, "br wins a tie");
        assert_eq!(pick(&["br ; Q=0.9 , gzip;q=1.0"], &both), Gzip, "spaces, upper-case Q");
        assert_eq!(pick(&["gzip;q=0.5, identity"], &both), Identity);
        assert_eq!(
            pick(&["gzip;q=0.5"], &both),
            Gzip,
            "identity not named is least preferred"
        );
        assert_eq!(pick(&["br;q=0.001"], &both), Brotli);
        assert_eq!(pick(&["br;q=0.001, identity;q=0.002"], &both), Identity);
        assert_eq!(pick(&["br;q=0, gzip;q=0"], &both), Identity);
    }

    #[test]
    fn wildcards_and_identity() {
        use Coding::*;
        let both = both();
        assert_eq!(pick(&["*"], &both), Brotli);
        assert_eq!(pick(&["*;q=0.5, gzip"], &both), Gzip);
        assert_eq!(pick(&["*, br;q=0"], &both), Gzip);
        assert_eq!(pick(&["identity"], &both), Identity);
        assert_eq!(
            pick(&["identity;q=0, *;q=0"], &both),
            Identity,
            "nothing acceptable: as is"
        );
        assert_eq!(pick(&["*;q=0"], &both), Identity);
        assert_eq!(pick(&["*;q=0, gzip;q=0.1"], &both), Gzip, "identity refused by *;q=0");
    }

    #[test]
    fn absent_empty_and_odd_headers() {
        use Coding::*;
        let both = both();
        assert_eq!(pick(&[], &both), Identity, "no header: as is");
        assert_eq!(pick(&[""], &both), Identity, "empty: identity only");
        assert_eq!(pick(&["deflate, zstd, compress"], &both), Identity);
        assert_eq!(pick(&["br;q=2, gzip"], &both), Gzip, "a bad qvalue drops its element");
        assert_eq!(pick(&["br;q=0.0001, gzip;q=0.9"], &both), Gzip);
        assert_eq!(pick(&["br;q=, gzip;q=0.9"], &both), Gzip);
        assert_eq!(pick(&["br;q=1.001"], &both), Identity);
        assert_eq!(pick(&[",,br,,"], &both), Brotli);
        assert_eq!(pick(&["br;level=5"], &both), Brotli, "other parameters are ignored");
        assert_eq!(pick(&["br"], &Encodings::default()), Identity, "no variants");
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_quality("1"), Some(1000));
        assert_eq!(parse_quality("1.000"), Some(1000));
        assert_eq!(parse_quality("1."), Some(1000));
        assert_eq!(parse_quality("0"), Some(0));
        assert_eq!(parse_quality("0.5"), Some(500));
        assert_eq!(parse_quality("0.25"), Some(250));
        assert_eq!(parse_quality("0.125"), Some(125));
        assert_eq!(parse_quality("0.001"), Some(1));
        for bad in ["", "2", "1.5", "0.1234", "-0", "0.x", ".5", " 1", "01"] {
            assert_eq!(parse_quality(bad), None, "{bad:?}");
        }
    }
}

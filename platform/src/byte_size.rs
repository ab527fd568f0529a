//! [`ByteSize`]: an amount of bytes as operators write it (`512MiB`, `2G`, `1048576`), parsed
//! once at the edge and shown back the same way in messages.

use std::fmt;
use std::str::FromStr;

/// A positive number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByteSizeError {
    #[error("{0:?} is not a size like 512MiB, 2GiB, 64M or 1048576 (bytes)")]
    Invalid(String),
    #[error("the size must be positive")]
    Zero,
    #[error("{0:?} is too large")]
    TooLarge(String),
}

impl ByteSize {
    pub const KIB: u64 = 1 << 10;
    pub const MIB: u64 = 1 << 20;
    pub const GIB: u64 = 1 << 30;
    pub const TIB: u64 = 1 << 40;

    /// `None` for zero: a limit of nothing is a mistake, never a setting.
    pub const fn new(bytes: u64) -> Option<Self> {
        if bytes == 0 { None } else { Some(Self(bytes)) }
    }

    pub const fn mib(n: u64) -> Self {
        Self(n * Self::MIB)
    }

    pub const fn gib(n: u64) -> Self {
        Self(n * Self::GIB)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    /// A whole number, optionally followed by a unit: `K`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB`
    /// (all powers of 1024, case-insensitive, a space allowed before the unit) or `B`.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let s = raw.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| ByteSizeError::Invalid(raw.to_owned()))?;
        let factor = match unit.trim_start().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => Self::KIB,
            "m" | "mb" | "mib" => Self::MIB,
            "g" | "gb" | "gib" => Self::GIB,
            "t" | "tb" | "tib" => Self::TIB,
            _ => return Err(ByteSizeError::Invalid(raw.to_owned())),
        };
        let bytes = n
            .checked_mul(factor)
            .ok_or_else(|| ByteSizeError::TooLarge(raw.to_owned()))?;
        Self::new(bytes).ok_or(ByteSizeError::Zero)
    }
}

impl fmt::Display for ByteSize {
    /// In the largest binary unit that shows it exactly, else with one decimal: `512 MiB`,
    /// `2 GiB`, `1.5 GiB`, `1000 B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [
            ("TiB", Self::TIB),
            ("GiB", Self::GIB),
            ("MiB", Self::MIB),
            ("KiB", Self::KIB),
        ] {
            if n >= size {
                return if n.is_multiple_of(size) {
                    write!(f, "{} {unit}", n / size)
                } else {
                    write!(f, "{:.1} {unit}", n as f64 / size as f64)
                };
            }
        }
        write!(f, "{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<u64, ByteSizeError> {
        s.parse::<ByteSize>().map(ByteSize::bytes)
    }

    #[test]
    fn parses_units() {
        assert_eq!(parse("1048576"), Ok(1 << 20));
        assert_eq!(parse("512MiB"), Ok(512 << 20));
        assert_eq!(parse("512 mib"), Ok(512 << 20));
        assert_eq!(parse("64M"), Ok(64 << 20));
        assert_eq!(parse("2G"), Ok(2 << 30));
        assert_eq!(parse(" 2GiB "), Ok(2 << 30));
        assert_eq!(parse("3k"), Ok(3 << 10));
        assert_eq!(parse("1TiB"), Ok(1 << 40));
        assert_eq!(parse("100B"), Ok(100));
    }

    #[test]
    fn refuses_nonsense() {
        assert_eq!(parse("0"), Err(ByteSizeError::Zero));
        assert_eq!(parse("0GiB"), Err(ByteSizeError::Zero));
        assert!(matches!(parse(""), Err(ByteSizeError::Invalid(_))));
        assert!(matches!(parse("GiB"), Err(ByteSizeError::Invalid(_))));
        assert!(matches!(parse("-5M"), Err(ByteSizeError::Invalid(_))));
        assert!(matches!(parse("1.5G"), Err(ByteSizeError::Invalid(_))));
        assert!(matches!(parse("5 parsecs"), Err(ByteSizeError::Invalid(_))));
        assert!(matches!(parse("99999999999T"), Err(ByteSizeError::TooLarge(_))));
    }

    #[test]
    fn displays_like_it_parses() {
        assert_eq!(ByteSize::mib(512).to_string(), "512 MiB");
        assert_eq!(ByteSize::gib(2).to_string(), "2 GiB");
        assert_eq!(ByteSize::new(3 << 29).unwrap().to_string(), "1.5 GiB");
        assert_eq!(ByteSize::new(1000).unwrap().to_string(), "1000 B");
        assert_eq!(ByteSize::new(2048).unwrap().to_string(), "2 KiB");
        for s in ["512 MiB", "2 GiB", "64 KiB", "7 B"] {
            assert_eq!(s.parse::<ByteSize>().unwrap().to_string(), s);
        }
    }
}

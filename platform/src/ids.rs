//! Opaque random identifiers.
//!
//! Every id is 20 characters of lowercase Crockford base32 (100 random bits): short enough for a
//! URL, safe inside a DNS label, and never guessable from another tenant's ids.

use std::fmt;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const LEN: usize = 20;

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source is unavailable");
}

fn random_id() -> String {
    let mut bytes = [0u8; LEN];
    random_bytes(&mut bytes);
    bytes.iter().map(|b| ALPHABET[usize::from(b & 31)] as char).collect()
}

/// A string that is not a well-formed id.
#[derive(Debug, thiserror::Error)]
#[error("not a valid id")]
pub struct InvalidId;

fn check(raw: &str) -> Result<(), InvalidId> {
    if raw.len() == LEN && raw.bytes().all(|b| ALPHABET.contains(&b)) {
        Ok(())
    } else {
        Err(InvalidId)
    }
}

macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn generate() -> Self {
                Self(random_id())
            }

            pub fn parse(raw: &str) -> Result<Self, InvalidId> {
                check(raw)?;
                Ok(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(raw: String) -> Result<Self, InvalidId> {
                check(&raw)?;
                Ok(Self(raw))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

define_id!(
    /// A user account.
    UserId
);
define_id!(
    /// A project (one site, one repository).
    ProjectId
);
define_id!(
    /// One build of one commit, and the immutable set of files it produced.
    DeploymentId
);

impl DeploymentId {
    /// The id's first characters, as in the deployment's own hostname (`<short>--<project>`):
    /// unique enough within one project.
    pub fn short(&self) -> &str {
        &self.0[..9]
    }
}
define_id!(
    /// A personal API token (the id, not the secret).
    TokenId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = DeploymentId::generate();
        assert_eq!(id.as_str().len(), LEN);
        assert_eq!(DeploymentId::parse(id.as_str()).unwrap(), id);
        assert_ne!(DeploymentId::generate(), id);
    }

    #[test]
    fn rejects_foreign_strings() {
        for bad in [
            "",
            "abc",
            "../../etc/passwd",
            "ABCDEFGHJKMNPQRSTVWX",
            "0123456789abcdefghjki",
        ] {
            assert!(UserId::parse(bad).is_err(), "{bad}");
        }
    }
}

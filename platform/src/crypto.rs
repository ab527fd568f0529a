//! Sealing secrets at rest: the GitHub App's keys and the projects' environment values are
//! stored encrypted with the platform's secret key (XChaCha20-Poly1305, a random nonce per
//! value). Reading the database alone does not reveal them.

use crate::settings::Secret;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Sealed values start with this, so a future key or algorithm can be told apart.
const PREFIX: &str = "v1:";
const NONCE: usize = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the secret key must be 64 hexadecimal characters (32 bytes)")]
    BadKey,
    #[error("a sealed value is malformed")]
    Malformed,
    #[error("a sealed value cannot be opened with this secret key (was the key changed?)")]
    WrongKey,
}

#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox([redacted])")
    }
}

impl SecretBox {
    /// From the 32-byte key, given as 64 hex characters.
    pub fn new(key: &Secret) -> Result<Self, CryptoError> {
        let bytes = hex::decode(key.expose().trim()).map_err(|_| CryptoError::BadKey)?;
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| CryptoError::BadKey)?;
        Ok(Self { cipher })
    }

    /// A fresh random key, as [`SecretBox::new`] takes it.
    pub fn generate_key() -> Secret {
        let mut key = [0u8; 32];
        crate::ids::random_bytes(&mut key);
        Secret::new(hex::encode(key))
    }

    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE];
        crate::ids::random_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(&XNonce::from(nonce), plaintext.as_bytes())
            .expect("XChaCha20-Poly1305 encryption does not fail for in-memory data");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", hex::encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<Secret, CryptoError> {
        let raw = sealed.strip_prefix(PREFIX).ok_or(CryptoError::Malformed)?;
        let bytes = hex::decode(raw).map_err(|_| CryptoError::Malformed)?;
        if bytes.len() < NONCE {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE);
        let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| CryptoError::Malformed)?;
        let plain = self
            .cipher
            .decrypt(&XNonce::from(nonce), ciphertext)
            .map_err(|_| CryptoError::WrongKey)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| CryptoError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens() {
        let sb = SecretBox::new(&SecretBox::generate_key()).unwrap();
        let a = sb.seal("hunter2");
        let b = sb.seal("hunter2");
        assert_ne!(a, b, "a fresh nonce each time");
        assert!(!a.contains("hunter2"));
        assert_eq!(sb.open(&a).unwrap().expose(), "hunter2");
        let other = SecretBox::new(&SecretBox::generate_key()).unwrap();
        assert_eq!(other.open(&a).unwrap_err(), CryptoError::WrongKey);
        let mut tampered = a.clone();
        tampered.pop();
        tampered.push(if a.ends_with('0') { '1' } else { '0' });
        assert_eq!(sb.open(&tampered).unwrap_err(), CryptoError::WrongKey);
        assert_eq!(sb.open("plain").unwrap_err(), CryptoError::Malformed);
        assert_eq!(SecretBox::new(&Secret::new("abcd")).unwrap_err(), CryptoError::BadKey);
    }
}

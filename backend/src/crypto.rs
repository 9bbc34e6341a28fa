//! Sealing small secrets with AES-256-GCM: `base64(nonce ‖ ciphertext)`, with a version prefix
//! for master-key rotation.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;

/// A 256-bit key.
#[derive(Clone)]
pub struct SealKey(Aes256Gcm);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(…)")
    }
}

impl SealKey {
    #[must_use]
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(Aes256Gcm::new(&key.into()))
    }

    /// Parses `base64(32 bytes)`.
    ///
    /// # Errors
    /// When it is not base64 of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, &'static str> {
        let raw = STANDARD.decode(s.trim()).map_err(|_| "must be base64")?;
        let key: [u8; 32] = raw.try_into().map_err(|_| "must be 32 bytes, base64-encoded")?;
        Ok(Self::from_bytes(key))
    }

    /// A new random key, base64-encoded.
    #[must_use]
    pub fn generate_base64() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    #[must_use]
    pub fn seal(&self, plain: &[u8]) -> Option<String> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        out.extend(self.0.encrypt(Nonce::from_slice(&nonce), plain).ok()?);
        Some(format!("v1:{}", STANDARD.encode(out)))
    }

    #[must_use]
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        let raw = STANDARD.decode(sealed.strip_prefix("v1:")?).ok()?;
        if raw.len() < 12 {
            return None;
        }
        let (nonce, ct) = raw.split_at(12);
        self.0.decrypt(Nonce::from_slice(nonce), ct).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_with_the_same_key() {
        let k = SealKey::from_base64(&SealKey::generate_base64()).expect("key");
        let other = SealKey::from_base64(&SealKey::generate_base64()).expect("key");
        let sealed = k.seal(b"acme_live_secret").expect("sealed");
        assert!(!sealed.contains("secret"));
        assert_eq!(k.open(&sealed).as_deref(), Some(&b"acme_live_secret"[..]));
        assert_eq!(other.open(&sealed), None);
        assert!(SealKey::from_base64("c2hvcnQ=").is_err());
    }
}

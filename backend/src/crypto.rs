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

/// Passwords: argon2id (the crate's default parameters, OWASP's minimum or better) in the PHC
/// string format.
pub mod password {
    use argon2::Argon2;
    use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
    use rand::RngCore;

    /// Hashes a password. Slow on purpose: call it off the async threads.
    #[must_use]
    pub fn hash(password: &str) -> Option<String> {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let salt = SaltString::encode_b64(&bytes).ok()?;
        Argon2::default().hash_password(password.as_bytes(), &salt).ok().map(|h| h.to_string())
    }

    /// Checks a password against a stored hash (constant time in the password).
    #[must_use]
    pub fn verify(stored: &str, password: &str) -> bool {
        PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn hashes_are_argon2id_and_salted() {
            let a = super::hash("correct horse").expect("hashed");
            let b = super::hash("correct horse").expect("hashed");
            assert!(a.starts_with("$argon2id$"));
            assert_ne!(a, b, "salted");
            assert!(super::verify(&a, "correct horse"));
            assert!(!super::verify(&a, "correct horsE"));
            assert!(!super::verify("not a hash", "x"));
        }
    }
}

/// A random token for a cookie or a link (32 bytes, base64url) and the digest that is stored.
#[must_use]
pub fn new_token() -> (String, String) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let digest = token_digest(&token);
    (token, digest)
}

/// SHA-256 of a token, hex.
#[must_use]
pub fn token_digest(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).iter().fold(String::with_capacity(64), |mut s, b| {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
        s
    })
}

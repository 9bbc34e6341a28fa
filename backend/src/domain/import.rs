//! Imports of existing keys: the import's id, and the secrets of a foreign format.

use super::{ApiKey, KeyHash};

/// The most keys one import call takes.
pub const MAX_KEYS: usize = 10_000;

/// The caller's id of an import: retrying with it answers the same and imports nothing twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportId(String);

impl ImportId {
    /// # Errors
    /// When it is not 1 to 128 letters, digits, `_`, `-`, `.` or `:`.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if ok { Ok(Self(s.to_owned())) } else { Err("must be 1 to 128 letters, digits, '_', '-', '.' or ':'") }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A secret being imported, as the caller gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportedSecret {
    /// A Keyroll key (its head and checksum hold).
    Ours(ApiKey),
    /// A key of another system, in clear.
    Foreign(String),
    /// Only the SHA-256 of a key: its format is unknown.
    Hash(KeyHash),
}

impl ImportedSecret {
    /// A key in clear: ours when it parses as ours; otherwise a foreign one, which must be 16 to
    /// 256 printable characters without spaces and not start like ours (a Keyroll key with a
    /// broken checksum is a typo, not another system's key).
    ///
    /// # Errors
    /// The reason it is refused.
    pub fn plaintext(s: &str) -> Result<Self, &'static str> {
        if let Ok(k) = ApiKey::parse(s) {
            return if k.is_root() { Err("is a root key: root keys cannot be imported") } else { Ok(Self::Ours(k)) };
        }
        if ApiKey::has_our_head(s) {
            return Err("starts like a Keyroll key but is not one (its checksum does not hold)");
        }
        if s.len() < 16 || s.len() > 256 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be 16 to 256 printable characters without spaces");
        }
        Ok(Self::Foreign(s.to_owned()))
    }

    /// A key by its SHA-256, as 64 hexadecimal characters.
    ///
    /// # Errors
    /// When it is not.
    pub fn sha256(s: &str) -> Result<Self, &'static str> {
        KeyHash::from_hex(&s.to_ascii_lowercase()).map(Self::Hash).ok_or("must be 64 hexadecimal characters")
    }

    #[must_use]
    pub fn hash(&self) -> KeyHash {
        match self {
            Self::Ours(k) => k.hash(),
            Self::Foreign(s) => KeyHash::of(s),
            Self::Hash(h) => *h,
        }
    }

    /// What names the key in lists: our start; the first characters of a foreign key (a
    /// quarter of it, at most eight); the beginning of the hash when only that is known.
    #[must_use]
    pub fn start(&self) -> String {
        match self {
            Self::Ours(k) => k.start().to_owned(),
            Self::Foreign(s) => s.chars().take((s.len() / 4).min(8)).collect(),
            Self::Hash(h) => format!("sha256:{}", &h.to_hex()[..8]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Environment, KeyHead, KeyPrefix};

    #[test]
    fn secrets_are_told_apart() {
        let head = KeyHead::Api { prefix: KeyPrefix::parse("acme").expect("prefix"), env: Environment::Live };
        let ours = ApiKey::generate(&head);
        assert!(matches!(ImportedSecret::plaintext(ours.expose()), Ok(ImportedSecret::Ours(_))));
        let mut broken = ours.expose().to_owned();
        // Another last character than the one it had (a key may well end in `x`).
        let last = broken.pop();
        broken.push(if last == Some('x') { 'y' } else { 'x' });
        assert!(ImportedSecret::plaintext(&broken).is_err(), "a broken Keyroll key is refused");
        let foreign = ImportedSecret::plaintext("sk_prod_4eC39HqLyjWDarjtT1zdp7dc").expect("foreign");
        assert_eq!(foreign.start(), "sk_prod_");
        assert_eq!(foreign.hash(), KeyHash::of("sk_prod_4eC39HqLyjWDarjtT1zdp7dc"));
        assert!(ImportedSecret::plaintext("short").is_err());
        assert!(ImportedSecret::plaintext("has a space in it, see").is_err());
        let root = ApiKey::generate(&KeyHead::Root);
        assert!(ImportedSecret::plaintext(root.expose()).is_err());
        let h = KeyHash::of("x").to_hex();
        let by_hash = ImportedSecret::sha256(&h.to_uppercase()).expect("hash");
        assert_eq!(by_hash.hash().to_hex(), h);
        assert_eq!(by_hash.start(), format!("sha256:{}", &h[..8]));
        assert!(ImportedSecret::sha256("abc").is_err());
    }

    #[test]
    fn import_ids() {
        assert!(ImportId::parse("migration-2026-12:batch.1").is_ok());
        assert!(ImportId::parse("").is_err());
        assert!(ImportId::parse("has space").is_err());
        assert!(ImportId::parse(&"a".repeat(129)).is_err());
    }
}

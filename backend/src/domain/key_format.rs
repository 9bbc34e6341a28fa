//! The key format: `{prefix}_{env}_{32 base62 random}{6 base62 CRC-32}`, and root keys
//! `kr_root_{32 base62 random}{6 base62 CRC-32}`.
//!
//! The checksum lets the verify path reject typos and garbage before any lookup.

use std::fmt;

use rand::Rng;
use sha2::{Digest, Sha256};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
const BODY_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;
/// The longest key we accept: a 12-character prefix, `_live_` and the body.
pub const MAX_KEY_LEN: usize = 12 + 6 + BODY_LEN;
/// The shortest key: a 2-character prefix, `_live_` and the body (root keys are as long).
pub const MIN_KEY_LEN: usize = 2 + 6 + BODY_LEN;
/// The head of every root key.
pub const ROOT_HEAD: &str = "kr_root_";

/// Why a key prefix is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 2 to 12 characters: a lowercase letter, then lowercase letters or digits")]
pub struct PrefixError;

/// The prefix of an API's keys: `[a-z][a-z0-9]{1,11}`. `kr` is reserved for root keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// # Errors
    /// When the prefix does not match `[a-z][a-z0-9]{1,11}`.
    pub fn parse(s: &str) -> Result<Self, PrefixError> {
        if Self::is_valid(s.as_bytes()) { Ok(Self(s.to_owned())) } else { Err(PrefixError) }
    }

    /// Does `b` match `[a-z][a-z0-9]{1,11}`?
    fn is_valid(b: &[u8]) -> bool {
        (2..=12).contains(&b.len())
            && b[0].is_ascii_lowercase()
            && b[1..].iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `live` or `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Live,
    Test,
}

impl Environment {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(Self::Live),
            "test" => Some(Self::Test),
            _ => None,
        }
    }
}

/// What stands before the random body of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyHead {
    Api { prefix: KeyPrefix, env: Environment },
    Root,
}

impl KeyHead {
    /// The head of an API's keys, from its stored prefix and environment.
    ///
    /// # Errors
    /// When the stored prefix or environment is not one (a corrupt row).
    pub fn of_api(prefix: &str, environment: &str) -> Result<Self, PrefixError> {
        Ok(Self::Api { prefix: KeyPrefix::parse(prefix)?, env: Environment::parse(environment).ok_or(PrefixError)? })
    }

    fn write(&self, out: &mut String) {
        match self {
            Self::Api { prefix, env } => {
                out.push_str(prefix.as_str());
                out.push('_');
                out.push_str(env.as_str());
                out.push('_');
            }
            Self::Root => out.push_str(ROOT_HEAD),
        }
    }
}

/// Why a presented key is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("the key has the wrong length")]
    Length,
    #[error("the key has characters outside its alphabet")]
    Alphabet,
    #[error("the key has no valid prefix and environment")]
    Head,
    #[error("the key's checksum does not match")]
    Checksum,
}

/// A syntactically valid key whose checksum holds. Never printed in full by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    text: String,
    head_len: usize,
    root: bool,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.start())
    }
}

impl ApiKey {
    /// A new random key with the given head.
    #[must_use]
    pub fn generate(head: &KeyHead) -> Self {
        let mut text = String::with_capacity(MAX_KEY_LEN);
        head.write(&mut text);
        let head_len = text.len();
        let mut rng = rand::rng();
        for _ in 0..RANDOM_LEN {
            text.push(char::from(BASE62[rng.random_range(0..62)]));
        }
        let sum = checksum(text.as_bytes());
        text.push_str(std::str::from_utf8(&sum).unwrap_or_default());
        Self { text, head_len, root: matches!(head, KeyHead::Root) }
    }

    /// Checks length, alphabet, head and checksum. Does no lookup.
    ///
    /// # Errors
    /// When any of those does not hold.
    pub fn parse(s: &str) -> Result<Self, KeyFormatError> {
        let root = Self::check(s)?;
        Ok(Self { text: s.to_owned(), head_len: s.len() - BODY_LEN, root })
    }

    /// [`ApiKey::parse`] without keeping the text: says whether it is a root key.
    ///
    /// # Errors
    /// As [`ApiKey::parse`].
    pub fn check(s: &str) -> Result<bool, KeyFormatError> {
        let b = s.as_bytes();
        if b.len() < MIN_KEY_LEN || b.len() > MAX_KEY_LEN {
            return Err(KeyFormatError::Length);
        }
        let head_len = b.len() - BODY_LEN;
        let (head, body) = b.split_at(head_len);
        if !body.iter().all(u8::is_ascii_alphanumeric) {
            return Err(KeyFormatError::Alphabet);
        }
        let root = head == ROOT_HEAD.as_bytes();
        if !root && !head_is_valid(head) {
            return Err(KeyFormatError::Head);
        }
        let (signed, sum) = b.split_at(b.len() - CHECKSUM_LEN);
        // Not secret: the checksum is public information derived from the key's text.
        if checksum(signed) != sum {
            return Err(KeyFormatError::Checksum);
        }
        Ok(root)
    }

    /// The prefix and environment of a key that passed [`ApiKey::check`] (none for a root key).
    #[must_use]
    pub fn head_of(s: &str) -> Option<(KeyPrefix, Environment)> {
        let head = s.as_bytes().get(..s.len().checked_sub(BODY_LEN)?)?;
        parse_head(head)
    }

    /// Does the text start like a Keyroll key (`kr_root_`, or a valid prefix, `live` or `test`,
    /// and `_`), whether or not the rest holds? Such a text that fails [`ApiKey::check`] is
    /// malformed; any other may be an imported key of a foreign format.
    #[must_use]
    pub fn has_our_head(s: &str) -> bool {
        if s.starts_with(ROOT_HEAD) {
            return true;
        }
        let mut parts = s.splitn(3, '_');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(prefix), Some(env), Some(_)) => KeyPrefix::parse(prefix).is_ok() && Environment::parse(env).is_some(),
            _ => false,
        }
    }

    #[must_use]
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// The head: `acme_live_` or `kr_root_`.
    #[must_use]
    pub fn head(&self) -> &str {
        &self.text[..self.head_len]
    }

    /// Head plus the first four random characters, for display.
    #[must_use]
    pub fn start(&self) -> &str {
        &self.text[..self.head_len + 4]
    }

    /// The full secret. Show it once; never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.text
    }

    #[must_use]
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.text)
    }
}

fn parse_head(head: &[u8]) -> Option<(KeyPrefix, Environment)> {
    let s = std::str::from_utf8(head).ok()?;
    let s = s.strip_suffix('_')?;
    let (prefix, env) = s.rsplit_once('_')?;
    Some((KeyPrefix::parse(prefix).ok()?, Environment::parse(env)?))
}

/// Would [`parse_head`] accept `head`? The same rules, without making a prefix.
fn head_is_valid(head: &[u8]) -> bool {
    let Some((b'_', rest)) = head.split_last() else { return false };
    let Some(sep) = rest.iter().rposition(|&c| c == b'_') else { return false };
    let (prefix, env) = (&rest[..sep], &rest[sep + 1..]);
    KeyPrefix::is_valid(prefix) && (env == b"live" || env == b"test")
}

/// CRC-32 (IEEE) of `signed`, big-endian base62, left-padded with `0` to six characters.
fn checksum(signed: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = u64::from(crc32fast::hash(signed));
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        // n % 62 < 62: the index is in range and the cast cannot truncate.
        let digit = (n % 62) as usize;
        *slot = BASE62[digit];
        n /= 62;
    }
    out
}

/// SHA-256 of the whole key: what is stored and looked up.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    #[must_use]
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    #[must_use]
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    }

    #[must_use]
    pub fn from_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        Some(Self(out))
    }

    /// Constant-time comparison, for secrets.
    #[must_use]
    pub fn ct_eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn acme() -> KeyHead {
        KeyHead::Api { prefix: KeyPrefix::parse("acme").expect("valid prefix"), env: Environment::Live }
    }

    #[test]
    fn our_heads_are_told_from_foreign_keys() {
        assert!(ApiKey::has_our_head("acme_live_whatever"));
        assert!(ApiKey::has_our_head("acme_test_"));
        assert!(ApiKey::has_our_head("kr_root_x"));
        assert!(!ApiKey::has_our_head("sk_prod_abc"), "prod is no environment of ours");
        assert!(!ApiKey::has_our_head("7f3a9c2e41b8"));
        assert!(!ApiKey::has_our_head("Acme_live_x"), "prefixes are lowercase");
        assert!(!ApiKey::has_our_head("acme_live"));
    }

    #[test]
    fn generated_keys_round_trip() {
        let k = ApiKey::generate(&acme());
        assert!(k.expose().starts_with("acme_live_"));
        assert_eq!(k.expose().len(), 10 + 38);
        assert_eq!(ApiKey::parse(k.expose()), Ok(k.clone()));
        assert_eq!(k.start().len(), 14);
        let r = ApiKey::generate(&KeyHead::Root);
        assert!(r.is_root() && r.expose().starts_with("kr_root_"));
        assert_eq!(r.expose().len(), MIN_KEY_LEN);
        let short =
            ApiKey::generate(&KeyHead::Api { prefix: KeyPrefix::parse("ab").expect("valid"), env: Environment::Test });
        assert_eq!(ApiKey::parse(short.expose()), Ok(short.clone()));
        assert_eq!(ApiKey::parse(r.expose()).map(|k| k.is_root()), Ok(true));
    }

    #[test]
    fn checksum_is_crc32_in_base62() {
        // CRC-32 of "" is 0: six zeros.
        assert_eq!(&checksum(b""), b"000000");
        // The CRC-32 check value: CRC-32("123456789") = 0xCBF43926.
        let n: u64 = 0xCBF4_3926;
        let mut expect = String::new();
        let mut m = n;
        for _ in 0..6 {
            expect.insert(0, char::from(BASE62[usize::try_from(m % 62).unwrap_or(0)]));
            m /= 62;
        }
        assert_eq!(std::str::from_utf8(&checksum(b"123456789")).ok(), Some(expect.as_str()));
    }

    #[test]
    fn the_quick_head_check_agrees_with_parsing() {
        let heads = "acme_live_ acme_test_ a1_live_ ab_live_ abcdefghijkl_live_ abcdefghijklm_live_ a_live_ 1a_live_ \
                     Acme_live_ acme_prod_ acme_live acme__live_ acme_live__ _live_ live_ _ acme-x_live_ a_b_live_ \
                     acme_LIVE_ ünï_live_ kr_root_";
        for head in heads.split_whitespace().chain([""]) {
            assert_eq!(head_is_valid(head.as_bytes()), parse_head(head.as_bytes()).is_some(), "{head:?}");
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in ["", "x", &"x".repeat(10_000), "acme_live_ünïcødé", "acme_live_\0abc", "' OR 1=1 --"] {
            assert!(ApiKey::parse(bad).is_err(), "{bad:?} parsed");
        }
        let k = ApiKey::generate(&acme());
        let upper = k.expose().replacen("acme", "ACME", 1);
        assert!(ApiKey::parse(&upper).is_err());
        let staging = k.expose().replacen("live", "prod", 1);
        assert!(ApiKey::parse(&staging).is_err());
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(KeyPrefix::parse("acme").is_ok());
        assert!(KeyPrefix::parse("a1").is_ok());
        for bad in ["a", "1abc", "Acme", "abcdefghijklm", "ac-me", ""] {
            assert!(KeyPrefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hash_hex_round_trips() {
        let h = KeyHash::of("abc");
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        assert!(h.ct_eq(&KeyHash::of("abc")));
        assert!(!h.ct_eq(&KeyHash::of("abd")));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every single-character change of a valid key is rejected.
        #[test]
        fn checksum_rejects_every_single_character_change(prefix in "[a-z][a-z0-9]{1,11}", live in any::<bool>()) {
            let head = KeyHead::Api {
                prefix: KeyPrefix::parse(&prefix).expect("generated prefix is valid"),
                env: if live { Environment::Live } else { Environment::Test },
            };
            let key = ApiKey::generate(&head);
            let text = key.expose().as_bytes().to_vec();
            for i in 0..text.len() {
                for &c in BASE62.iter().chain(b"_-.") {
                    if c == text[i] {
                        continue;
                    }
                    let mut changed = text.clone();
                    changed[i] = c;
                    let s = String::from_utf8(changed).expect("ascii");
                    prop_assert!(ApiKey::parse(&s).is_err(), "accepted {} (changed at {})", s, i);
                }
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = ApiKey::parse(&s);
        }
    }
}

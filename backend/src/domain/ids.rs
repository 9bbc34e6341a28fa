//! Typed TypeID identifiers: `{prefix}_{26 chars}` over a UUIDv7, so ids sort by creation.

use std::fmt;
use std::str::FromStr;

use mti::prelude::*;

/// Why a string is not an id of the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an id of the form {prefix}_<26 characters>")]
pub struct IdError {
    pub prefix: &'static str,
}

/// TypeID's suffix alphabet: Crockford's base32, lowercase.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// `{prefix}_{26 characters}`: the 128 bits of `uuid` in base32, most significant first (the first
/// character holds the top 3 bits), as TypeID writes it. Ids are made on every request (request
/// ids), so this writes straight into one allocation.
fn encode(prefix: &str, uuid: u128) -> String {
    let mut suffix = [0_u8; 26];
    for (i, c) in suffix.iter_mut().enumerate() {
        // 125 - 5i ≥ 0 for i < 26; the mask keeps the index below 32.
        let digit = ((uuid >> (125 - 5 * i)) & 31) as usize;
        *c = ALPHABET[digit];
    }
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    // Every byte is of the ASCII alphabet.
    out.push_str(std::str::from_utf8(&suffix).unwrap_or_default());
    out
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new time-ordered id.
            #[must_use]
            pub fn generate() -> Self {
                Self(encode($prefix, uuid::Uuid::now_v7().as_u128()))
            }

            /// Parses an id; the prefix must be this type's.
            ///
            /// # Errors
            /// When the text is not a TypeID with this type's prefix.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                let err = IdError { prefix: $prefix };
                if s.len() != $prefix.len() + 27 || !s.starts_with(concat!($prefix, "_")) {
                    return Err(err);
                }
                let parsed = MagicTypeId::from_str(s).map_err(|_| err.clone())?;
                if parsed.prefix().as_str() != $prefix {
                    return Err(err);
                }
                Ok(Self(parsed.to_string()))
            }

            /// Trusted conversion for values read back from our own database.
            #[must_use]
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }

            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }

            #[must_use]
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

typed_id!(/// A tenant (an API provider).
    TenantId, "ten");
typed_id!(/// A dashboard user.
    UserId, "usr");
typed_id!(/// An API (keyspace) of a tenant.
    ApiId, "api");
typed_id!(/// A consumer (the provider's customer).
    ConsumerId, "con");
typed_id!(/// One key version.
    KeyId, "key");
typed_id!(/// A rotation of a lineage.
    RotationId, "rot");
typed_id!(/// A durable job.
    JobId, "job");
typed_id!(/// An event of the event log.
    EventId, "evt");
typed_id!(/// A webhook endpoint.
    WebhookEndpointId, "whk");
typed_id!(/// One delivery of an event.
    DeliveryId, "dlv");
typed_id!(/// A rotation policy.
    PolicyId, "pol");
typed_id!(/// An entry of the audit log.
    AuditId, "aud");
typed_id!(/// A tenant's own playbook.
    PlaybookId, "pbk");
typed_id!(/// An alert.
    AlertId, "alr");
typed_id!(/// A run of a playbook.
    RunId, "run");
typed_id!(/// A signing key: the `kid` of the tokens it signs.
    SigningKeyId, "sig");
typed_id!(/// An access token (its `jti`).
    TokenId, "tok");
typed_id!(/// A single-use way into the consumer portal (its `jti`).
    PortalGrantId, "ptl");
typed_id!(/// A request, for logs and problem bodies.
    RequestId, "req");

impl RequestId {
    /// A new request id, made without the shared UUIDv7 context that [`RequestId::generate`]
    /// takes (every request makes one): each thread keeps its own. Ordered by creation within a
    /// thread; 73 random bits at each new millisecond keep ids of different threads apart.
    #[must_use]
    pub fn for_request() -> Self {
        Self(encode(Self::PREFIX, REQUEST_UUIDS.with(|g| g.borrow_mut().next(now_ms()))))
    }
}

thread_local! {
    static REQUEST_UUIDS: std::cell::RefCell<ThreadUuids> = std::cell::RefCell::new(ThreadUuids::new());
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One thread's UUIDv7 source: the millisecond, then a 74-bit field (`rand_a` and `rand_b`)
/// that starts random (top bit clear) at each new millisecond and counts up within it.
struct ThreadUuids {
    rng: rand::rngs::SmallRng,
    ms: u64,
    field: u128,
}

impl ThreadUuids {
    fn new() -> Self {
        Self { rng: rand::SeedableRng::from_os_rng(), ms: 0, field: 0 }
    }

    fn next(&mut self, now_ms: u64) -> u128 {
        const FIELD: u128 = (1 << 74) - 1;
        if now_ms > self.ms {
            self.ms = now_ms;
            let r = u128::from(rand::RngCore::next_u64(&mut self.rng)) << 64
                | u128::from(rand::RngCore::next_u64(&mut self.rng));
            self.field = r & (FIELD >> 1);
        } else {
            // The same millisecond (or a clock that went back): count on.
            self.field = (self.field + 1) & FIELD;
        }
        let ms = u128::from(self.ms & ((1 << 48) - 1));
        (ms << 80) | (0x7 << 76) | ((self.field >> 62) << 64) | (0b10 << 62) | (self.field & ((1 << 62) - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_creation() {
        let a = KeyId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = KeyId::generate();
        assert!(a < b, "{a} should sort before {b}");
        assert_eq!(KeyId::parse(a.as_str()).as_ref(), Ok(&a));
        assert_eq!(a.as_str().len(), 30);
    }

    #[test]
    fn ids_are_written_as_typeid_writes_them() {
        for uuid in [0_u128, u128::MAX, 0x0188_bac7_a8e3_7000_8000_0000_0000_0001, uuid::Uuid::now_v7().as_u128()] {
            let ours = encode("req", uuid);
            let suffix = TypeIdSuffix::from(uuid::Uuid::from_u128(uuid));
            let theirs = "req".create_type_id_with_suffix::<V7>(suffix).to_string();
            assert_eq!(ours, theirs);
            assert!(RequestId::parse(&ours).is_ok(), "{ours}");
        }
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert!(a < b, "{a} should sort before {b} (same millisecond or not)");
    }

    #[test]
    fn request_ids_are_uuid_v7_in_order_within_a_thread() {
        let ids: Vec<RequestId> = (0..2_000).map(|_| RequestId::for_request()).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "{} should sort before {}", w[0], w[1]);
        }
        for id in &ids {
            let parsed = MagicTypeId::from_str(id.as_str()).expect("a TypeID");
            let uuid = parsed.suffix().to_uuid();
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            let secs = uuid.get_timestamp().map(|t| t.to_unix()).expect("a time").0;
            assert!(secs.abs_diff(now_ms() / 1000) <= 1, "{id}: {secs}");
        }
        // Another thread's ids differ (their random fields start apart).
        let other = std::thread::spawn(RequestId::for_request).join().expect("a thread");
        assert!(!ids.contains(&other));
        // Within a millisecond the field counts up; past its end it wraps.
        let mut g = ThreadUuids::new();
        let (a, b) = (g.next(5), g.next(5));
        assert_eq!(b, a + 1);
        assert_eq!(a >> 80, 5);
        g.field = (1 << 74) - 1;
        assert_eq!(g.next(5) & 0xfff_u128 << 64, 0);
    }

    #[test]
    fn wrong_prefix_or_garbage_is_rejected() {
        let a = ApiId::generate();
        assert!(KeyId::parse(a.as_str()).is_err());
        assert!(KeyId::parse("key_").is_err());
        assert!(KeyId::parse("key_zzzzzzzzzzzzzzzzzzzzzzzzzz").is_err());
        assert!(KeyId::parse("' OR 1=1 --").is_err());
    }
}

//! Key material: new Ed25519 signing keys and portal secrets, and their public JWKs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rand::RngCore;

/// The PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410); the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// A fresh 32-byte secret (an Ed25519 seed, or a portal HMAC key).
#[must_use]
pub fn random_secret() -> [u8; 32] {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    seed
}

/// The signing key of an Ed25519 seed.
#[must_use]
pub fn encoding_key(seed: &[u8; 32]) -> EncodingKey {
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(seed);
    EncodingKey::from_ed_der(&der)
}

/// The public JWK of an Ed25519 seed, with its `kid`, `use` and `alg`.
///
/// # Errors
/// When the seed is not a key (it always is: every 32 bytes are).
pub fn public_jwk(seed: &[u8; 32], kid: &str) -> Result<Jwk, jsonwebtoken::errors::Error> {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(seed), Algorithm::EdDSA)?;
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
    Ok(jwk)
}

/// The verifying key of a published JWK.
///
/// # Errors
/// When the JWK is not an Ed25519 public key.
pub fn decoding_key(jwk: &Jwk) -> Result<DecodingKey, jsonwebtoken::errors::Error> {
    DecodingKey::from_jwk(jwk)
}

/// A secret as stored before sealing.
#[must_use]
pub fn encode_secret(secret: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(secret)
}

/// A stored secret, back.
#[must_use]
pub fn decode_secret(s: &[u8]) -> Option<[u8; 32]> {
    URL_SAFE_NO_PAD.decode(s).ok().and_then(|v| <[u8; 32]>::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_with_the_public_jwk_only() {
        let seed = random_secret();
        let jwk = public_jwk(&seed, "sig_test").expect("jwk");
        let json = serde_json::to_value(&jwk).expect("json");
        assert_eq!(json["kty"], "OKP");
        assert_eq!(json["crv"], "Ed25519");
        assert_eq!(json["kid"], "sig_test");
        assert!(json.get("d").is_none(), "the private part is never published");
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some("sig_test".into());
        let token = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "x", "exp": 4_000_000_000_i64}),
            &encoding_key(&seed),
        )
        .expect("signed");
        let key = decoding_key(&jwk).expect("key");
        let v = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).is_ok());
        let other = decoding_key(&public_jwk(&random_secret(), "sig_other").expect("jwk")).expect("key");
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &other, &v).is_err());
        assert_eq!(decode_secret(encode_secret(&seed).as_bytes()), Some(seed));
    }
}

//! jsonwebtoken's RustCrypto provider, with one change: an Ed25519 signer is made once per key
//! and kept, instead of for every token. jsonwebtoken asks its provider for a new signer on
//! every `encode`, and an Ed25519 signer made from the PKCS#8 bytes derives the public key (a
//! scalar multiplication) before it signs — twice the work of the signature itself.

use std::sync::{Arc, Once, OnceLock};

use ed25519_dalek::SigningKey;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner};
use jsonwebtoken::{Algorithm, EncodingKey};
use signature::Signer;

/// The signers made so far, by key bytes (the same bytes the keyring holds).
fn signers() -> &'static moka::sync::Cache<Vec<u8>, Arc<SigningKey>> {
    static CACHE: OnceLock<moka::sync::Cache<Vec<u8>, Arc<SigningKey>>> = OnceLock::new();
    CACHE.get_or_init(|| {
        moka::sync::Cache::builder().max_capacity(10_000).time_to_idle(std::time::Duration::from_secs(3_600)).build()
    })
}

struct KeptEd25519(Arc<SigningKey>);

impl Signer<Vec<u8>> for KeptEd25519 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).to_bytes().to_vec())
    }
}

impl JwtSigner for KeptEd25519 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

/// The PKCS#8 length of an Ed25519 key: a 16-byte prefix and the 32-byte seed.
const ED25519_PKCS8_LEN: usize = 48;

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    let der = key.as_bytes();
    if *alg == Algorithm::EdDSA
        && der.len() == ED25519_PKCS8_LEN
        && let Ok(seed) = <[u8; 32]>::try_from(&der[16..])
    {
        let kept = signers().get_with(der.to_vec(), || Arc::new(SigningKey::from_bytes(&seed)));
        return Ok(Box::new(KeptEd25519(kept)));
    }
    (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.signer_factory)(alg, key)
}

use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER as RUST_CRYPTO;

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: RUST_CRYPTO.verifier_factory,
    key_utils: jsonwebtoken::crypto::KeyUtils {
        rsa_pub_components_from_private_key: RUST_CRYPTO.key_utils.rsa_pub_components_from_private_key,
        rsa_pub_components_from_public_key: RUST_CRYPTO.key_utils.rsa_pub_components_from_public_key,
        ec_pub_components_from_private_key: RUST_CRYPTO.key_utils.ec_pub_components_from_private_key,
        ed_pub_components_from_private_key: RUST_CRYPTO.key_utils.ed_pub_components_from_private_key,
        compute_digest: RUST_CRYPTO.key_utils.compute_digest,
    },
};

/// Installs the provider for this process (once; before the first token).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if PROVIDER.install_default().is_err() {
            tracing::warn!("another JWT crypto provider was installed first; Ed25519 signers are made per token");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_signer_signs_as_the_library_does() {
        let seed = [7u8; 32];
        let key = super::super::material::encoding_key(&seed);
        let msg = b"header.claims";
        let ours = new_signer(&Algorithm::EdDSA, &key).expect("signer").try_sign(msg).expect("signed");
        let theirs = (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.signer_factory)(&Algorithm::EdDSA, &key)
            .expect("signer")
            .try_sign(msg)
            .expect("signed");
        assert_eq!(ours, theirs, "Ed25519 is deterministic: the same key signs the same bytes alike");
    }
}

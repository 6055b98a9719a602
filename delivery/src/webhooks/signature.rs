//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): a delivery carries
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (`v1,` + base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`), keyed with the
//! endpoint's secret, `whsec_` + base64 of the key bytes. Any Standard Webhooks library
//! verifies them.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// The spec asks for 24 to 64 bytes of key.
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// An endpoint's signing key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

#[derive(Debug, thiserror::Error)]
#[error("not a webhook signing secret (`whsec_` and base64 of 24 to 64 bytes)")]
pub struct NotASecret;

impl SigningSecret {
    /// A new secret of 32 random bytes, as stored and shown once (`whsec_…`).
    pub fn generate() -> String {
        let mut key = [0u8; 32];
        SystemRandom::new().fill(&mut key).expect("the system's random source");
        format!("{PREFIX}{}", STANDARD.encode(key))
    }

    pub fn parse(raw: &str) -> Result<Self, NotASecret> {
        let encoded = raw.strip_prefix(PREFIX).ok_or(NotASecret)?;
        let key = STANDARD.decode(encoded).map_err(|_| NotASecret)?;
        if !KEY_BYTES.contains(&key.len()) {
            return Err(NotASecret);
        }
        Ok(Self(key))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header's value.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body).finalize().into_bytes()))
    }

    /// Whether `header` (space-separated `v1,<base64>` entries, as during a key rotation)
    /// holds a signature of this message; compared in constant time.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header.split(' ').filter_map(|entry| entry.strip_prefix("v1,")).any(|sig| match STANDARD.decode(sig) {
            Ok(bytes) => self.mac(id, timestamp, body).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        })
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standard_webhooks_reference_does() {
        // The spec's own test vector (standard-webhooks, libraries' shared tests).
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(secret.verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, &format!("v1,bm90IGl0 {sig}")));
        assert!(!secret.verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body, &sig));
        assert!(!secret.verify("msg_other", 1614265330, body, &sig));
    }

    #[test]
    fn generated_secrets_parse_and_differ() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert_ne!(a, b);
        assert!(SigningSecret::parse(&a).is_ok());
        assert!(SigningSecret::parse("whsec_c2hvcnQ=").is_err(), "too short");
        assert!(SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err(), "no prefix");
        assert_eq!(format!("{:?}", SigningSecret::parse(&a).unwrap()), "SigningSecret(…)");
    }
}

//! Stripe webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, where
//! each v1 is HMAC-SHA256 over `"{t}.{raw body}"` with the endpoint secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Events older or newer than this are refused (replay window), as Stripe's libraries do.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("malformed Stripe-Signature header")]
    Malformed,
    #[error("timestamp outside the tolerance window")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks `header` for `body` at time `now` (unix seconds).
pub fn verify(header: Option<&str>, body: &[u8], secret: &str, now: i64) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp: Option<i64> = None;
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let (key, value) = part.trim().split_once('=').ok_or(SignatureError::Malformed)?;
        match key {
            "t" => timestamp = Some(value.parse().map_err(|_| SignatureError::Malformed)?),
            "v1" => candidates.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?),
            _ => {} // v0 and future schemes are ignored, as Stripe documents.
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let expected = sign(secret, timestamp, body);
    // Every candidate is compared in constant time; the loop does not stop early.
    let matched = candidates.iter().fold(false, |acc, c| acc | bool::from(c.as_slice().ct_eq(&expected)));
    if matched { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// The raw v1 signature bytes for a timestamp and body (also what tests sign with).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// A complete header value, for tests and tooling.
pub fn header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(sign(secret, timestamp, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";

    #[test]
    fn accepts_any_matching_v1_within_tolerance() {
        let body = br#"{"id":"evt_1"}"#;
        let good = hex::encode(sign(SECRET, 1000, body));
        let header = format!("t=1000,v1=deadbeef,v1={good},v0=ignored");
        assert_eq!(verify(Some(&header), body, SECRET, 1000 + 299), Ok(()));
        assert_eq!(verify(Some(&header), body, SECRET, 1000 + 301), Err(SignatureError::Stale));
        assert_eq!(verify(Some(&header), b"{}", SECRET, 1000), Err(SignatureError::Mismatch));
        assert_eq!(verify(Some(&header), body, "whsec_other", 1000), Err(SignatureError::Mismatch));
        assert_eq!(verify(None, body, SECRET, 1000), Err(SignatureError::Missing));
        for bad in ["garbage", "t=abc,v1=00", "v1=00", "t=1000", "t=1000,v1=zz"] {
            assert_eq!(verify(Some(bad), body, SECRET, 1000), Err(SignatureError::Malformed), "{bad}");
        }
    }

    #[test]
    fn matches_an_independent_hmac() {
        // python3: hmac.new(b"key", b"1.payload", hashlib.sha256).hexdigest()
        assert_eq!(
            hex::encode(sign("key", 1, b"payload")),
            "32c9b0eaac24dc9674a36bdaa6352fb67abcb2c6d9731e18010b62b34fbdd32a"
        );
    }
}

//! TURN REST API credentials (draft-uberti-behave-turn-rest; coturn's `use-auth-secret`
//! with `static-auth-secret`): the server and the TURN server share a secret, and every
//! `/webrtc/config` request gets a credential that the TURN server can check without
//! asking us, and that stops working by itself.
//!
//! `username = "<expiry>:<user>"`, where `<expiry>` is the Unix time in seconds after which
//! the TURN server refuses it, and `credential = base64(HMAC-SHA1(secret, username))`
//! (standard alphabet, padded: 28 characters).

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// The separator between expiry and user (coturn's `--rest-api-separator` default).
pub const SEPARATOR: char = ':';

/// A time-limited TURN username and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredential {
    /// `"<expiry>:<user>"`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub credential: String,
    /// Unix time (seconds) after which the TURN server refuses the credential.
    pub expires_at: u64,
}

/// The HMAC could not be keyed (never happens: HMAC takes keys of any length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the TURN secret cannot key an HMAC-SHA1")]
pub struct MintError;

/// The credential for `user` that expires at `expires_at` (Unix seconds). A past
/// `expires_at` gives a credential every TURN server refuses (tests use this).
pub fn mint(secret: &[u8], user: &str, expires_at: u64) -> Result<TurnCredential, MintError> {
    let username = format!("{expires_at}{SEPARATOR}{user}");
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).map_err(|_| MintError)?;
    mac.update(username.as_bytes());
    let credential = STANDARD.encode(mac.finalize().into_bytes());
    Ok(TurnCredential {
        username,
        credential,
        expires_at,
    })
}

/// The credential for `user`, valid for `ttl` seconds from now.
pub fn mint_for(secret: &[u8], user: &str, ttl: u64) -> Result<TurnCredential, MintError> {
    mint(secret, user, unix_now().saturating_add(ttl))
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked with `printf '%s' "$U" | openssl dgst -sha1 -hmac "$SECRET" -binary | base64`.
    #[test]
    fn matches_openssl() {
        let c = mint(b"sekrit", "alice", 1_795_325_037).unwrap();
        assert_eq!(c.username, "1795325037:alice");
        assert_eq!(c.credential, "zx4pWxN/H9j5oD8Rm9lRTfHUiIg=");
        assert_eq!(c.expires_at, 1_795_325_037);
    }

    #[test]
    fn ttl_counts_from_now() {
        let before = unix_now();
        let c = mint_for(b"k", "bob", 600).unwrap();
        assert!((before + 600..=unix_now() + 600).contains(&c.expires_at));
        assert!(c.username.ends_with(":bob"));
        assert_eq!(c.credential.len(), 28);
        // The user part may itself hold the separator; the expiry is before the first one.
        let c = mint(b"k", "svc:worker", 5).unwrap();
        assert_eq!(c.username, "5:svc:worker");
    }
}

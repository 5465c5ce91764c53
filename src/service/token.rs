//! Resume tokens (SPEC §2): a random secret in every successful LOGIN_ACK
//! that logs its user in again without a password hash. The server keeps
//! only a BLAKE2b-256 hash of it: a token is 256 random bits, so a fast
//! hash is enough (nothing to guess from it), and a stolen table gives no
//! usable token.

use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};

/// How long a token is valid by default (SPEC: 7 days).
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Random bytes in a token.
const BYTES: usize = 32;

/// A new token as sent to the client (64 hex digits: URL-safe) and the hash
/// to store; `None` only if the system's random source fails.
pub fn issue() -> Option<(String, Vec<u8>)> {
    let mut secret = [0u8; BYTES];
    OsRng.try_fill_bytes(&mut secret).ok()?;
    let text: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let hash = digest(&text);
    Some((text, hash))
}

/// The stored form of a token as the client sent it.
pub fn digest(token: &str) -> Vec<u8> {
    Blake2b::<U32>::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_random_hex_and_hash_the_same_way() {
        let (a, hash_a) = super::issue().unwrap();
        let (b, _) = super::issue().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(super::digest(&a), hash_a);
        assert_ne!(super::digest(&b), hash_a);
        assert_eq!(hash_a.len(), 32);
    }
}

//! Password hashing: argon2id from the RustCrypto `argon2` crate.
//!
//! Parameters: 19 MiB of memory, 2 passes, 1 lane (OWASP's argon2id
//! minimum), a random 16-byte salt per password, stored with the hash as a
//! PHC string. A hash takes tens of milliseconds, so it only ever runs on
//! the hashing pool (see `jobs`), never on an event loop.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Memory cost in KiB.
const MEMORY_KIB: u32 = 19 * 1024;
/// Passes over memory.
const PASSES: u32 = 2;
/// Parallel lanes.
const LANES: u32 = 1;

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with a fresh salt; `None` only if the system's random
/// source fails.
pub fn hash(password: &str) -> Option<String> {
    let salt = SaltString::generate(&mut OsRng);
    hasher().hash_password(password.as_bytes(), &salt).ok().map(|h| h.to_string())
}

/// Checks `password` against a stored PHC string.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_verifies_only_the_right_password_and_is_salted() {
        let a = super::hash("secret").unwrap();
        let b = super::hash("secret").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b);
        assert!(super::verify("secret", &a));
        assert!(!super::verify("Secret", &a));
        assert!(!super::verify("secret", "not a hash"));
    }
}

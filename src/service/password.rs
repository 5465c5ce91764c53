//! Password hashing: argon2id from the RustCrypto `argon2` crate.
//!
//! Parameters: 19 MiB of memory, 2 passes, 1 lane (OWASP's argon2id
//! minimum), a random 16-byte salt per password, stored with the hash as a
//! PHC string. A hash takes tens of milliseconds, so it only ever runs on
//! the hashing pool (see `jobs`), never on an event loop.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::error::ServiceError;
use crate::db::schema::PLAINTEXT_MARK;

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

/// What a password check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Wrong,
    Right,
    /// Right, and the stored value was an original user's plaintext: this
    /// hash of it replaces it.
    RightReplaceWith(String),
}

/// Checks `password` against what `user.password` holds: a hash, or a
/// plaintext password marked by the upgrade from the original C++
/// ChatServer. A plaintext check costs one hash too, right or wrong, so its
/// timing tells nothing either, and on a match that hash replaces it.
pub fn check(password: &str, stored: &str) -> Result<Verdict, ServiceError> {
    let Some(plain) = stored.strip_prefix(PLAINTEXT_MARK) else {
        return Ok(if verify(password, stored) { Verdict::Right } else { Verdict::Wrong });
    };
    let fresh = hash(password).ok_or(ServiceError::Hash)?;
    Ok(if same(plain.as_bytes(), password.as_bytes()) { Verdict::RightReplaceWith(fresh) } else { Verdict::Wrong })
}

/// Byte comparison whose time depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
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

    #[test]
    fn a_marked_plaintext_password_is_right_once_with_its_hash() {
        use super::{Verdict, check};
        let Ok(Verdict::RightReplaceWith(hash)) = check("123456", "plain:123456") else { panic!() };
        assert!(super::verify("123456", &hash));
        assert_eq!(check("12345", "plain:123456").ok(), Some(Verdict::Wrong));
        assert_eq!(check("plain:123456", "plain:123456").ok(), Some(Verdict::Wrong));
        assert_eq!(check("123456", "123456").ok(), Some(Verdict::Wrong));
        assert_eq!(check("123456", &hash).ok(), Some(Verdict::Right));
    }
}

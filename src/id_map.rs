//! Maps keyed by user id, hashed cheaply.
//!
//! std's SipHash guards a map against keys chosen to collide; these keys
//! are ids MySQL assigned to registered users (a client's request only
//! looks them up), and the lookup is on every message's path.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from user id to `V`.
pub type IdMap<V> = HashMap<i32, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of one id: a multiply spreads consecutive ids over
/// the high bits the table's control bytes use, and keeps them distinct in
/// the low bits its buckets use.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only ids are hashed (write_i32); this keeps any other key correct.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_i32(&mut self, id: i32) {
        self.0 = u64::from(id as u32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use super::IdMap;

    #[test]
    fn holds_every_id() {
        let mut map = IdMap::default();
        for id in (-1000..1000).chain([i32::MIN, i32::MAX]) {
            map.insert(id, id * 2);
        }
        assert_eq!(map.len(), 2002);
        assert!((-1000..1000).all(|id| map.get(&id) == Some(&(id * 2))));
        assert_eq!(map.get(&i32::MIN), Some(&i32::MIN.wrapping_mul(2)));
    }
}

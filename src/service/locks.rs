//! Per-user locks that order "is the user online? else store" against
//! "log in: read stored messages, then go online", so a message is never
//! stored just after its receiver read the store.

use parking_lot::{Mutex, MutexGuard};

/// Stripes: enough that unrelated users rarely share one.
const STRIPES: usize = 256;

/// Striped locks keyed by user id.
pub struct UserLocks {
    /// One mutex per stripe; a user maps to `id % STRIPES`.
    stripes: Vec<Mutex<()>>,
}

impl Default for UserLocks {
    fn default() -> Self {
        UserLocks { stripes: (0..STRIPES).map(|_| Mutex::new(())).collect() }
    }
}

fn stripe(user: i32) -> usize {
    user.unsigned_abs() as usize % STRIPES
}

impl UserLocks {
    pub fn lock(&self, user: i32) -> MutexGuard<'_, ()> {
        self.stripes[stripe(user)].lock()
    }

    /// Locks the stripes of all `users`, in stripe order so that two callers
    /// can never wait on each other.
    pub fn lock_many(&self, users: &[i32]) -> Vec<MutexGuard<'_, ()>> {
        let mut ids: Vec<usize> = users.iter().map(|&u| stripe(u)).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(|i| self.stripes[i].lock()).collect()
    }
}

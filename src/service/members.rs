//! The members of each group, cached so that GROUP_CHAT need not ask MySQL
//! for every message (and can run on the event loop when every member is
//! online). Membership only grows (ADD_GROUP); the server that adds a
//! member forgets the group at once and tells the others over the bus, and
//! an entry is read again after [`FRESH_FOR`] in case such a notice was
//! lost with Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::id_map::IdMap;

/// How long a cached member list is used before it is read again.
pub const FRESH_FOR: Duration = Duration::from_secs(10);

/// One group's members as read from MySQL.
struct Cached {
    /// Member ids, sorted.
    members: Arc<[i32]>,
    /// When they were read, for [`FRESH_FOR`].
    read_at: Instant,
}

/// Groups most recently used, by id.
#[derive(Default)]
pub struct Members {
    /// The cached groups.
    groups: Mutex<IdMap<Cached>>,
    /// Bumped by every change: a list read before it is not kept.
    epoch: AtomicU64,
}

/// A point in the cache's history, taken before reading members from MySQL.
#[derive(Clone, Copy)]
pub struct Epoch(u64);

/// Past this many groups the cache starts over (a bound on memory).
const MAX_GROUPS: usize = 100_000;

impl Members {
    /// The cached members of `group`, if fresh.
    pub fn get(&self, group: i32, now: Instant) -> Option<Arc<[i32]>> {
        let groups = self.groups.lock();
        let cached = groups.get(&group)?;
        (now.duration_since(cached.read_at) < FRESH_FOR).then(|| Arc::clone(&cached.members))
    }

    /// Taken before a read from MySQL; see [`Members::put`].
    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch.load(Ordering::Acquire))
    }

    /// Keeps `members` of `group`, read at `read_at` after `epoch` was
    /// taken, unless something changed since (then the read may be stale).
    pub fn put(&self, group: i32, members: Arc<[i32]>, epoch: Epoch, read_at: Instant) {
        let mut groups = self.groups.lock();
        if self.epoch.load(Ordering::Acquire) != epoch.0 {
            return;
        }
        if groups.len() >= MAX_GROUPS {
            groups.clear();
        }
        groups.insert(group, Cached { members, read_at });
    }

    /// `group` gained a member.
    pub fn changed(&self, group: i32) {
        let mut groups = self.groups.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        groups.remove(&group);
    }

    /// Forgets every group (notices from the bus may have been missed).
    pub fn clear(&self) {
        let mut groups = self.groups.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        groups.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_forgets_the_group_and_a_read_begun_before_it_is_not_kept() {
        let members = Members::default();
        let now = Instant::now();
        let before = members.epoch();
        members.put(7, Arc::from([1, 2]), before, now);
        assert_eq!(members.get(7, now).as_deref(), Some(&[1, 2][..]));
        let stale = members.epoch();
        members.changed(7);
        assert!(members.get(7, now).is_none());
        members.put(7, Arc::from([1, 2]), stale, now);
        assert!(members.get(7, now).is_none(), "a list read before the change was kept");
        members.put(7, Arc::from([1, 2, 3]), members.epoch(), now);
        assert_eq!(members.get(7, now).as_deref(), Some(&[1, 2, 3][..]));
        assert!(members.get(7, now + FRESH_FOR).is_none(), "an old list is read again");
    }
}

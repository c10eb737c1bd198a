//! A short-lived cache of verified principals, so that a burst of bearer-token
//! requests (a viewer opening a study sends dozens) costs one user lookup, not one
//! per request.
//!
//! Only active users are cached, keyed by user id, for `[auth]
//! principal_cache_secs`. Every change this node makes to a user (update,
//! deactivation) drops that user's entry at once. A change made elsewhere (another
//! node sharing the database, `glia user ...` run beside the node) takes effect
//! when the entry expires, so the setting bounds how long a deactivated user's
//! still-valid access token keeps working on other nodes; 0 disables the cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Principal;

/// Entries beyond which the cache is emptied rather than grown (a bound on memory
/// for a node with very many distinct users; refilling costs one lookup each).
const MAX_ENTRIES: usize = 10_000;

/// Verified principals of active users, each valid for a fixed time.
pub struct PrincipalCache {
    ttl: Duration,
    entries: Mutex<HashMap<i64, (Instant, Principal)>>,
    /// Bumped by every [`forget`](Self::forget): a lookup that began before a change
    /// must not cache what it read.
    generation: AtomicU64,
}

impl PrincipalCache {
    /// A cache whose entries live `ttl` (zero: nothing is ever cached).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Take before reading a user from the database; pass to [`put`](Self::put).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (Instant, Principal)>> {
        // The map holds plain values: a panic elsewhere cannot leave it inconsistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached principal of `user_id`, if it was stored less than `ttl` ago.
    pub fn get(&self, user_id: i64) -> Option<Principal> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut map = self.lock();
        match map.get(&user_id) {
            Some((at, p)) if at.elapsed() < self.ttl => Some(p.clone()),
            Some(_) => {
                map.remove(&user_id);
                None
            }
            None => None,
        }
    }

    /// Remember the principal of an active user, read from the database after
    /// [`generation`](Self::generation) returned `read_at`; nothing is cached when a
    /// user changed meanwhile.
    pub fn put(&self, p: &Principal, read_at: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.lock();
        if self.generation() != read_at {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(p.user_id, (Instant::now(), p.clone()));
    }

    /// Drop `user_id`'s entry (their account changed on this node).
    pub fn forget(&self, user_id: i64) {
        let mut map = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        map.remove(&user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn who(id: i64, role: Role) -> Principal {
        Principal {
            user_id: id,
            username: format!("u{id}"),
            role,
            centre_id: None,
            patient_ids: Vec::new(),
            physician_name: None,
        }
    }

    #[test]
    fn entries_expire_and_can_be_forgotten() {
        let c = PrincipalCache::new(Duration::from_millis(200));
        c.put(&who(1, Role::Admin), c.generation());
        c.put(&who(2, Role::Technician), c.generation());
        assert_eq!(c.get(1).map(|p| p.role), Some(Role::Admin));
        c.forget(1);
        assert_eq!(c.get(1), None);
        assert_eq!(c.get(2).map(|p| p.user_id), Some(2));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(c.get(2), None, "an expired entry is not served");
    }

    #[test]
    fn a_lookup_that_raced_a_change_is_not_cached() {
        let c = PrincipalCache::new(Duration::from_secs(60));
        let read_at = c.generation();
        c.forget(7); // the account changed while the old row was being read
        c.put(&who(7, Role::Admin), read_at);
        assert_eq!(c.get(7), None);
        c.put(&who(7, Role::Technician), c.generation());
        assert_eq!(c.get(7).map(|p| p.role), Some(Role::Technician));
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let c = PrincipalCache::new(Duration::ZERO);
        c.put(&who(1, Role::Admin), c.generation());
        assert_eq!(c.get(1), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = PrincipalCache::new(Duration::from_secs(60));
        for id in 0..(MAX_ENTRIES as i64 + 5) {
            c.put(&who(id, Role::Radiologist), c.generation());
        }
        assert!(c.lock().len() <= MAX_ENTRIES);
        assert!(
            c.get(MAX_ENTRIES as i64 + 4).is_some(),
            "the newest entry is kept"
        );
    }
}

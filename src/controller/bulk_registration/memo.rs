//! What a registration's passes read of AWS and may share: the walk of its OUs and the list of
//! its stack instances. Passes come for many reasons (a child verified, a status write, a poll);
//! most cannot have changed what these listings return, and at fleet scale each listing is
//! ⌈N / page⌉ calls. A listing is read again only when something can have changed it: the spec
//! (a new generation), an operation that finished, a request annotation, or the resync
//! interval passing; while an operation runs, instances are re-read every
//! [`WHILE_RUNNING`] to show its progress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::aws::stacksets::Instance;

/// How often a running operation's instances are listed (children see their role deployed and
/// verify before the whole operation ends).
pub const WHILE_RUNNING: Duration = Duration::from_secs(5);
/// Entries not read again for this long belong to deleted registrations: dropped.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Why a pass wants a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Something changed what AWS returns (an operation finished or started, a user asked):
    /// read it again.
    Fresh,
    /// An operation runs: a listing younger than [`WHILE_RUNNING`] will do.
    Progress,
    /// Nothing known changed: a listing younger than the resync interval will do.
    Settled,
}

/// Whether a listing read at `read_at` under `key` serves a pass that wants `want` of `key`
/// at `now`.
pub fn serves(
    read_at: Instant,
    read_key: &str,
    key: &str,
    want: Want,
    resync: Duration,
    now: Instant,
) -> bool {
    let age = now.saturating_duration_since(read_at);
    read_key == key
        && match want {
            Want::Fresh => false,
            Want::Progress => age < WHILE_RUNNING.min(resync),
            Want::Settled => age < resync,
        }
}

/// One listing per registration (by UID), under the key of what it was read for.
pub struct Memo<T> {
    entries: Mutex<HashMap<String, Entry<T>>>,
    resync: Duration,
}

struct Entry<T> {
    key: String,
    read_at: Instant,
    value: Arc<T>,
}

impl<T> Memo<T> {
    pub fn new(resync: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            resync,
        }
    }

    /// The listing of registration `uid` under `key`, when it serves `want`.
    pub fn get(&self, uid: &str, key: &str, want: Want) -> Option<Arc<T>> {
        let now = Instant::now();
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(uid)?;
        serves(entry.read_at, &entry.key, key, want, self.resync, now).then(|| entry.value.clone())
    }

    /// Records a listing just read.
    pub fn put(&self, uid: &str, key: &str, value: T) -> Arc<T> {
        let now = Instant::now();
        let value = Arc::new(value);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, e| now.saturating_duration_since(e.read_at) < FORGET_AFTER);
        entries.insert(
            uid.to_string(),
            Entry {
                key: key.to_string(),
                read_at: now,
                value: value.clone(),
            },
        );
        value
    }
}

/// The stack instances of a registration.
pub type Instances = Memo<Vec<Instance>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_read_again_only_when_something_can_have_changed_it() {
        let t0 = Instant::now();
        let resync = Duration::from_secs(300);
        let at = |s: u64| t0 + Duration::from_secs(s);
        // (seconds since the read, key asked, want) → the listing serves
        let rows = [
            (0, "g1", Want::Settled, true),
            (299, "g1", Want::Settled, true),
            (300, "g1", Want::Settled, false),
            // A new generation, an operation that finished, a request: read again.
            (1, "g2", Want::Settled, false),
            (0, "g1", Want::Fresh, false),
            // While an operation runs: every few seconds.
            (4, "g1", Want::Progress, true),
            (5, "g1", Want::Progress, false),
        ];
        for (i, (age, key, want, served)) in rows.into_iter().enumerate() {
            assert_eq!(
                serves(t0, "g1", key, want, resync, at(age)),
                served,
                "row {i}"
            );
        }
        // A resync interval shorter than the progress interval bounds it too.
        let short = Duration::from_secs(3);
        assert!(!serves(t0, "g1", "g1", Want::Progress, short, at(3)));
    }

    #[test]
    fn the_memo_keeps_one_listing_per_registration() {
        let memo: Memo<Vec<u8>> = Memo::new(Duration::from_secs(60));
        assert!(memo.get("uid-1", "k", Want::Settled).is_none());
        memo.put("uid-1", "k", vec![1]);
        memo.put("uid-2", "k", vec![2]);
        assert_eq!(
            memo.get("uid-1", "k", Want::Settled).as_deref(),
            Some(&vec![1])
        );
        assert!(memo.get("uid-1", "other", Want::Settled).is_none());
        assert!(memo.get("uid-1", "k", Want::Fresh).is_none());
        memo.put("uid-1", "k", vec![3]);
        assert_eq!(
            memo.get("uid-1", "k", Want::Settled).as_deref(),
            Some(&vec![3])
        );
    }
}

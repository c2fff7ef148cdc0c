//! Which accounts and OUs lie under the OUs that policies list: one read of each listed OU's
//! subtree, kept for [`TTL`] and read again on a miss at most once per [`MIN_REFRESH`], so an
//! account that just joined the OU is found within a minute and a flood of refused objects
//! cannot turn into a flood of Organizations calls.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::debug;

use crate::aws::{AwsError, OrgUnits};

/// How long a subtree read answers "yes".
pub const TTL: Duration = Duration::from_secs(600);
/// The shortest time between two reads of one subtree.
pub const MIN_REFRESH: Duration = Duration::from_secs(60);

/// The OU membership cache.
pub struct Membership {
    org: Arc<dyn OrgUnits>,
    /// One slot per listed OU: concurrent questions about one OU wait for one read.
    units: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Subtree>>>>>,
}

/// What one read of an OU found.
struct Subtree {
    members: BTreeSet<String>,
    read_at: Instant,
}

impl Membership {
    pub fn new(org: Arc<dyn OrgUnits>) -> Self {
        Self {
            org,
            units: Mutex::default(),
        }
    }

    /// Forgets every subtree read, so the next question about each OU reads it again: a user
    /// asked for fresh targets (`accountlinker.dev/verify-requested-at`), which the cache's
    /// [`MIN_REFRESH`] would otherwise hold back for up to a minute.
    pub fn forget(&self) {
        self.units.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Whether the account or OU `id` is nested under the OU `unit`.
    pub async fn within(&self, id: &str, unit: &str) -> Result<bool, AwsError> {
        self.within_at(id, unit, Instant::now()).await
    }

    async fn within_at(&self, id: &str, unit: &str, now: Instant) -> Result<bool, AwsError> {
        let slot = self
            .units
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(unit.to_string())
            .or_default()
            .clone();
        let mut subtree = slot.lock().await;
        if let Some(known) = subtree.as_ref() {
            let age = now.saturating_duration_since(known.read_at);
            if age < TTL && (known.members.contains(id) || age < MIN_REFRESH) {
                return Ok(known.members.contains(id));
            }
        }
        let members = self.org.subtree(unit).await?;
        debug!(
            unit,
            members = members.len(),
            "read the organizational unit"
        );
        let found = members.contains(id);
        *subtree = Some(Subtree {
            members,
            read_at: now,
        });
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::fake::{FakeAws, ROOT};

    const OU: &str = "ou-root-aaaaaaaa";
    const NESTED: &str = "ou-root-bbbbbbbb";
    const INSIDE: &str = "111111111111";
    const OUTSIDE: &str = "999999999999";

    #[tokio::test]
    async fn a_subtree_is_read_once_and_again_only_on_a_late_miss_or_when_old() {
        let fake = Arc::new(FakeAws::new());
        {
            let mut s = fake.state();
            s.org_units.insert(OU.into(), ROOT.into());
            s.org_units.insert(NESTED.into(), OU.into());
        }
        fake.add_account(INSIDE, "inside@example.com", NESTED);
        fake.add_account(OUTSIDE, "outside@example.com", ROOT);
        let membership = Membership::new(fake.clone());
        let reads = || fake.calls().len();
        let t0 = Instant::now();

        // (id, seconds after the first question, answer, reads so far)
        let table = [
            (INSIDE, 0, true, 1),
            (NESTED, 1, true, 1),
            // A miss soon after a read is answered from the cache …
            (OUTSIDE, 30, false, 1),
            // … a miss a minute later reads again …
            (OUTSIDE, 61, false, 2),
            (OUTSIDE, 62, false, 2),
            // … and a hit is trusted until the TTL.
            (INSIDE, 600, true, 2),
            (INSIDE, 661, true, 3),
        ];
        for (id, at, want, calls) in table {
            let now = t0 + Duration::from_secs(at);
            let found = membership.within_at(id, OU, now).await.unwrap();
            assert_eq!(found, want, "{id} at {at}s");
            assert_eq!(reads(), calls, "reads after {id} at {at}s");
        }
        // An account moved out is noticed once the TTL passed.
        fake.state().accounts.get_mut(INSIDE).unwrap().parent = ROOT.into();
        let later = t0 + Duration::from_secs(661 + 600);
        assert!(!membership.within_at(INSIDE, OU, later).await.unwrap());
        // A failed read is an error, not a "no".
        fake.fail(
            "organizations:ListChildren",
            crate::aws::ErrorClass::Throttled,
            "Throttling",
        );
        let much_later = later + TTL;
        assert!(membership.within_at(INSIDE, OU, much_later).await.is_err());
    }
}

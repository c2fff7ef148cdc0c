//! How long things may take: the one place that turns the emulator's configured latencies
//! (StackSet operation time, account creation time) and the operator's intervals into the
//! timeouts of the tests. A test says what it waits for; the numbers live here.
//!
//! Timeouts are upper bounds for a machine shared with other test binaries: a passing test
//! never waits for them, a failing one fails after them.

use std::time::Duration;

use super::Emulator;

/// What the operator needs to notice a change it watches and write the outcome: a watch
/// event, one reconcile with a few AWS calls, a status write, and one retry after a conflict
/// or a throttled call, on a loaded machine.
const REACT: Duration = Duration::from_secs(60);
/// What one child LinkedAccount of a registration adds: created, watched, one AssumeRole and a
/// status write, with the STS rate limit of the tests' operators.
const PER_CHILD: Duration = Duration::from_millis(500);
/// The jitter the operator adds to a verification interval (±10 %), as a fraction.
const INTERVAL_JITTER: f64 = 0.1;
/// The first delay of the operator's per-object backoff (doubling, ±20 %, up to 5 min).
const BACKOFF_BASE: Duration = Duration::from_secs(2);

/// The emulator's latencies, as it reports them.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Every StackSet operation takes this long, plus `stack_set_per_wave` for each wave.
    stack_set_base: Duration,
    stack_set_per_wave: Duration,
    /// How long a CreateAccount request stays IN_PROGRESS.
    create_account: Duration,
}

impl Budget {
    /// Reads the latencies the emulator is configured with right now (set them first).
    pub async fn read(emulator: &Emulator) -> Self {
        let timing = emulator.get("/stacksets/timing").await;
        let organizations = emulator.get("/organizations").await;
        let seconds = |v: &serde_json::Value| Duration::from_secs_f64(v.as_f64().unwrap_or(0.0));
        Self {
            stack_set_base: seconds(&timing["base_seconds"]),
            stack_set_per_wave: seconds(&timing["seconds_per_wave"]),
            create_account: seconds(&organizations["create_seconds"]),
        }
    }

    /// The operator reacts to a change: one reconcile and a status write.
    pub fn react(&self) -> Duration {
        REACT
    }

    /// A LinkedAccount reports a refusal as Stalled once `grace` (`--access-denied-grace`)
    /// has passed.
    pub fn stall_after(&self, grace: Duration) -> Duration {
        grace + REACT
    }

    /// The next scheduled verification of a link verified every `interval`.
    pub fn next_verification(&self, interval: Duration) -> Duration {
        interval.mul_f64(1.0 + INTERVAL_JITTER) + REACT
    }

    /// The operator verifies again after AWS failed its calls for `failing_for` (throttling,
    /// an outage). With a doubling backoff the attempt after a failing window of W comes at
    /// most about 2W (+20 % jitter, + the base delay) after the window began; three times
    /// leaves room for a loaded machine.
    pub fn retry_after(&self, failing_for: Duration) -> Duration {
        (failing_for + BACKOFF_BASE) * 3 + REACT
    }

    /// One StackSet operation over `accounts` accounts, `concurrency` at a time (the emulator
    /// runs waves of `maxConcurrentCount`).
    pub fn operation(&self, accounts: usize, concurrency: usize) -> Duration {
        let waves = accounts.div_ceil(concurrency.max(1)).max(1);
        self.stack_set_base + self.stack_set_per_wave * u32::try_from(waves).unwrap_or(u32::MAX)
    }

    /// A BulkRegistration over `accounts` accounts becomes Ready after at most `operations`
    /// StackSet operations, `concurrency` accounts at a time, and every child verified.
    pub fn registration_ready(
        &self,
        accounts: usize,
        concurrency: usize,
        operations: u32,
    ) -> Duration {
        REACT
            + (self.operation(accounts, concurrency) + REACT) * operations
            + PER_CHILD * u32::try_from(accounts).unwrap_or(u32::MAX)
    }

    /// A BulkRegistration with `Delete` is gone: one operation deleting its instances, then
    /// the StackSet and the children.
    pub fn registration_deleted(&self, accounts: usize, concurrency: usize) -> Duration {
        REACT * 2 + self.operation(accounts, concurrency)
    }

    /// A CreateAccount request has finished.
    pub fn account_created(&self) -> Duration {
        self.create_account + REACT
    }

    /// A MemberAccount is Ready: its account created, placed, tagged, and its access role
    /// verified by the child LinkedAccount.
    pub fn member_ready(&self) -> Duration {
        self.create_account + REACT * 2
    }
}

//! Coalescing of reconcile triggers: a parent with thousands of children would otherwise be
//! reconciled once per child status write (a hot loop that re-reads the whole fleet each
//! time). Each key is let through at once when it was quiet for a window, and otherwise once
//! at the end of the window, however many triggers arrived in it. Unlike the kube runtime's
//! debounce, which keeps delaying a key while triggers keep coming, a steady stream of child
//! writes can never starve the parent: it is reconciled at least once per window.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use futures::stream::{BoxStream, FusedStream as _, Stream, StreamExt};
use tokio::time::Instant;

/// What to do with a trigger of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let it through now.
    Now,
    /// Let it through at this instant (the end of the window of the last one let through).
    At(Instant),
    /// Already due at the end of the window: nothing more.
    Merged,
}

/// Decides a trigger at `now` of a key last let through at `last` (if within memory) and
/// already `queued` for the end of its window or not.
pub fn decide(last: Option<Instant>, queued: bool, now: Instant, window: Duration) -> Decision {
    if queued {
        return Decision::Merged;
    }
    match last {
        Some(last) if now < last + window => Decision::At(last + window),
        _ => Decision::Now,
    }
}

/// The keys of `input`, each at most once per `window` (see the module doc). Ends when
/// `input` ends and nothing is queued.
pub fn coalesce<K>(
    input: impl Stream<Item = K> + Send + 'static,
    window: Duration,
) -> impl Stream<Item = K> + Send + 'static
where
    K: Clone + Eq + Hash + Send + 'static,
{
    let state = State {
        input: input.boxed().fuse(),
        window,
        last: HashMap::new(),
        queued: HashSet::new(),
        due: BTreeMap::new(),
        ready: VecDeque::new(),
        seq: 0,
    };
    futures::stream::unfold(state, |mut state| async move {
        let key = state.next().await?;
        Some((key, state))
    })
}

struct State<K> {
    input: futures::stream::Fuse<BoxStream<'static, K>>,
    window: Duration,
    /// When each key was last let through (keys quiet for a window are forgotten).
    last: HashMap<K, Instant>,
    queued: HashSet<K>,
    /// Keys due at the end of their window, in order (the counter keeps equal instants apart).
    due: BTreeMap<(Instant, u64), K>,
    ready: VecDeque<K>,
    seq: u64,
}

impl<K: Clone + Eq + Hash> State<K> {
    async fn next(&mut self) -> Option<K> {
        loop {
            if let Some(key) = self.ready.pop_front() {
                return Some(key);
            }
            let next_due = self.due.keys().next().map(|(at, _)| *at);
            if self.input.is_terminated() && next_due.is_none() {
                return None;
            }
            let sleep = async {
                match next_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                key = self.input.next(), if !self.input.is_terminated() => {
                    if let Some(key) = key {
                        self.trigger(key, Instant::now());
                    }
                }
                () = sleep => self.release(Instant::now()),
            }
        }
    }

    fn trigger(&mut self, key: K, now: Instant) {
        let last = self.last.get(&key).copied();
        match decide(last, self.queued.contains(&key), now, self.window) {
            Decision::Now => self.let_through(key, now),
            Decision::At(at) => {
                self.seq += 1;
                self.queued.insert(key.clone());
                self.due.insert((at, self.seq), key);
            }
            Decision::Merged => {}
        }
    }

    /// Lets through every key due by `now`.
    fn release(&mut self, now: Instant) {
        while let Some(entry) = self.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.queued.remove(&key);
            self.let_through(key, now);
        }
    }

    fn let_through(&mut self, key: K, now: Instant) {
        let window = self.window;
        self.last.retain(|_, at| now < *at + window);
        self.last.insert(key.clone(), now);
        self.ready.push_back(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(3);

    #[test]
    fn a_key_passes_at_once_when_quiet_else_once_at_the_end_of_its_window() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // (last let through, queued, now) → decision
        let rows = [
            (None, false, at(0), Decision::Now),
            (Some(at(0)), false, at(1), Decision::At(at(3))),
            (Some(at(0)), true, at(2), Decision::Merged),
            (Some(at(0)), false, at(3), Decision::Now),
            (Some(at(0)), false, at(10), Decision::Now),
        ];
        for (i, (last, queued, now, want)) in rows.into_iter().enumerate() {
            assert_eq!(decide(last, queued, now, WINDOW), want, "row {i}");
        }
    }

    /// A steady stream of triggers of one key over a second comes out as about one per
    /// window (the first at once, never two closer than the window), and another key is not
    /// held back by it.
    #[tokio::test]
    async fn a_steady_stream_of_triggers_becomes_one_per_window_and_never_starves() {
        let window = Duration::from_millis(200);
        let (tx, rx) = futures::channel::mpsc::unbounded::<&'static str>();
        let out = coalesce(rx, window);
        let started = Instant::now();
        let collector = tokio::spawn(async move {
            futures::pin_mut!(out);
            let mut seen = Vec::new();
            while let Some(key) = out.next().await {
                seen.push((key, started.elapsed()));
            }
            seen
        });
        let mut other_sent = None;
        while started.elapsed() < Duration::from_secs(1) {
            tx.unbounded_send("parent").unwrap();
            if other_sent.is_none() && started.elapsed() > Duration::from_millis(500) {
                tx.unbounded_send("other").unwrap();
                other_sent = Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let triggered_for = started.elapsed();
        drop(tx);
        let seen = collector.await.unwrap();
        let parent: Vec<Duration> = seen
            .iter()
            .filter(|(k, _)| *k == "parent")
            .map(|(_, t)| *t)
            .collect();
        assert!(
            parent[0] < window,
            "the first is let through at once: {seen:?}"
        );
        assert!(
            parent.windows(2).all(|w| w[1] - w[0] >= window),
            "two within a window: {seen:?}"
        );
        let most = triggered_for.as_millis() / window.as_millis() + 2;
        assert!(
            parent.len() >= 4 && parent.len() as u128 <= most,
            "{} passes for {triggered_for:?} of triggers: {seen:?}",
            parent.len()
        );
        // The trailing one comes after the last trigger: no change is left unseen.
        assert!(*parent.last().unwrap() >= triggered_for - Duration::from_millis(10));
        let other = seen
            .iter()
            .find(|(k, _)| *k == "other")
            .expect("other let through");
        assert!(other.1 - other_sent.unwrap() < window, "{seen:?}");
    }
}

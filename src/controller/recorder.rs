//! Publishes Kubernetes Events (`events.k8s.io/v1`) with a bounded memory of recent ones.
//!
//! The same Event published again within [`SERIES_WINDOW`] (same object, type, reason and
//! action) becomes a series on the first one (`series.count` and `series.lastObservedTime`
//! patched) instead of a new object, as `kubectl describe` expects. What the recorder keeps to
//! do that is bounded: at most [`CAPACITY`] recent Events, by name only, the oldest forgotten
//! first. At fleet scale an onboarding publishes a few Events per child; keeping each one whole
//! for the window (what `kube::runtime::events::Recorder` does, and scanning them all on every
//! publish) grew the operator by tens of MiB at 5,000 children. A repeat of a forgotten Event
//! only starts a new object.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};

/// A repeat this soon after the last one extends its series.
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// Recent Events remembered for series, at most.
pub const CAPACITY: usize = 2048;

/// What makes two Events the same occurrence repeated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    regarding: (String, String, String, String),
    type_: &'static str,
    reason: String,
    action: String,
}

impl Key {
    fn new(event: &Event, regarding: &ObjectReference) -> Self {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Self {
            regarding: (
                text(&regarding.kind),
                text(&regarding.namespace),
                text(&regarding.name),
                text(&regarding.uid),
            ),
            type_: type_name(event.type_),
            reason: event.reason.clone(),
            action: event.action.clone(),
        }
    }
}

/// The Event object a key's occurrences went to, and its series so far.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Published {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
    /// Which entry of the order queue is this one's newest.
    stamp: u64,
}

/// Recent Events by key, with their order of last use for forgetting the oldest.
#[derive(Debug, Default)]
struct Series {
    published: HashMap<Key, Published>,
    order: VecDeque<(Key, u64)>,
    next_stamp: u64,
}

/// What publishing an Event amounts to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Plan {
    /// A new Event object.
    Create,
    /// Occurrence `count` of the Event `name` in `namespace`.
    Repeat {
        namespace: String,
        name: String,
        count: i32,
    },
}

impl Series {
    /// What to do with an occurrence of `key` at `now`.
    fn plan(&self, key: &Key, now: Timestamp) -> Plan {
        match self.published.get(key) {
            Some(p) if within_window(p.last, now) => Plan::Repeat {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                count: p.count.saturating_add(1),
            },
            _ => Plan::Create,
        }
    }

    /// Remembers that `key`'s occurrence `count` went to `namespace/name` at `now`, then
    /// forgets what is past the window or over [`CAPACITY`], oldest first.
    fn record(&mut self, key: Key, namespace: String, name: String, count: i32, now: Timestamp) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.order.push_back((key.clone(), stamp));
        self.published.insert(
            key,
            Published {
                namespace,
                name,
                count,
                last: now,
                stamp,
            },
        );
        while let Some((oldest, stamp)) = self.order.front() {
            let current = self.published.get(oldest).filter(|p| p.stamp == *stamp);
            let keep = match current {
                // An older use of a key used again since: only its newest entry counts.
                None => false,
                Some(p) => self.published.len() <= CAPACITY && within_window(p.last, now),
            };
            if keep {
                break;
            }
            if let Some((oldest, stamp)) = self.order.pop_front()
                && self
                    .published
                    .get(&oldest)
                    .is_some_and(|p| p.stamp == stamp)
            {
                self.published.remove(&oldest);
            }
        }
        // A key used again and again leaves older queue entries behind a live one: rebuild
        // the queue from the live entries before it outgrows them.
        if self.order.len() > 2 * CAPACITY.max(self.published.len()) {
            let mut live: Vec<(Key, u64)> = self
                .published
                .iter()
                .map(|(k, p)| (k.clone(), p.stamp))
                .collect();
            live.sort_by_key(|(_, stamp)| *stamp);
            self.order = live.into();
        }
    }

    fn len(&self) -> usize {
        self.published.len()
    }
}

fn within_window(last: Timestamp, now: Timestamp) -> bool {
    now.duration_since(last).unsigned_abs() < SERIES_WINDOW
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// Publishes Events for the controllers; clones share the memory of recent Events.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    series: std::sync::Arc<Mutex<Series>>,
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            series: std::sync::Arc::default(),
        }
    }

    /// Publishes `event` about `regarding`: a new Event, or the next occurrence of the same
    /// one published within [`SERIES_WINDOW`]. Events of cluster-scoped objects go to
    /// `default`.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> kube::Result<()> {
        let key = Key::new(event, regarding);
        let now = Timestamp::now();
        let plan = self.lock().plan(&key, now);
        let (namespace, name, count) = match plan {
            Plan::Repeat {
                namespace,
                name,
                count,
            } => {
                let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
                let patch = serde_json::json!({
                    "series": {"count": count, "lastObservedTime": MicroTime(now)},
                });
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => (namespace, name, count),
                    // Expired or deleted meanwhile: a new object.
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        self.create(event, regarding, now).await?
                    }
                    Err(err) => return Err(err),
                }
            }
            Plan::Create => self.create(event, regarding, now).await?,
        };
        self.lock().record(key, namespace, name, count, now);
        Ok(())
    }

    /// Events remembered for series now.
    pub fn remembered(&self) -> usize {
        self.lock().len()
    }

    async fn create(
        &self,
        event: &Event,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> kube::Result<(String, String, i32)> {
        let object = self.object(event, regarding, now);
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let name = object.metadata.name.clone().unwrap_or_default();
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &object).await?;
        Ok((namespace, name, 1))
    }

    fn object(&self, event: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        let controller = &self.reporter.controller;
        let base = regarding.name.as_deref().unwrap_or(controller);
        K8sEvent {
            metadata: ObjectMeta {
                namespace: Some(
                    regarding
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                ),
                name: Some(format!("{base}.{:x}", now.as_nanosecond())),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(type_name(event.type_).into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            ..K8sEvent::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn key(name: &str, reason: &str) -> Key {
        let regarding = ObjectReference {
            kind: Some("LinkedAccount".into()),
            namespace: Some("team".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: None,
            action: "Reconcile".into(),
            secondary: None,
        };
        Key::new(&event, &regarding)
    }

    fn publish(series: &mut Series, key: &Key, now: Timestamp) -> Plan {
        let plan = series.plan(key, now);
        let (name, count) = match &plan {
            Plan::Create => (format!("{}.{}", key.regarding.2, now.as_second()), 1),
            Plan::Repeat { name, count, .. } => (name.clone(), *count),
        };
        series.record(key.clone(), "team".into(), name, count, now);
        plan
    }

    #[test]
    fn a_repeat_within_the_window_extends_the_series_and_a_later_one_starts_anew() {
        let mut series = Series::default();
        let k = key("a", "Verified");
        assert_eq!(publish(&mut series, &k, at(0)), Plan::Create);
        let repeat = |count| Plan::Repeat {
            namespace: "team".into(),
            name: "a.1800000000".into(),
            count,
        };
        assert_eq!(publish(&mut series, &k, at(60)), repeat(2));
        // The window counts from the last occurrence.
        assert_eq!(publish(&mut series, &k, at(60 + 359)), repeat(3));
        assert_eq!(
            publish(&mut series, &k, at(60 + 359 + 360)),
            Plan::Create,
            "a repeat past the window is a new Event"
        );
        // Another reason, another object or another type is another Event.
        assert_eq!(
            publish(&mut series, &key("a", "Drifted"), at(800)),
            Plan::Create
        );
        assert_eq!(
            publish(&mut series, &key("b", "Verified"), at(800)),
            Plan::Create
        );
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_are_forgotten_first() {
        let mut series = Series::default();
        let n = CAPACITY * 3;
        for i in 0..n {
            publish(&mut series, &key(&format!("child-{i}"), "Verified"), at(0));
            assert!(series.len() <= CAPACITY, "{} remembered", series.len());
        }
        assert!(series.order.len() <= CAPACITY + 1, "{}", series.order.len());
        // The newest are still series; the oldest start anew.
        let newest = key(&format!("child-{}", n - 1), "Verified");
        assert!(matches!(series.plan(&newest, at(1)), Plan::Repeat { .. }));
        assert_eq!(
            series.plan(&key("child-0", "Verified"), at(1)),
            Plan::Create
        );
    }

    #[test]
    fn events_past_the_window_are_forgotten_and_a_key_used_again_is_kept() {
        let mut series = Series::default();
        let hot = key("hot", "Verified");
        for i in 0..100 {
            publish(&mut series, &key(&format!("old-{i}"), "Verified"), at(0));
            publish(&mut series, &hot, at(i));
        }
        publish(&mut series, &key("new", "Verified"), at(400));
        // The old ones are past the window; `hot` was last used at 99 s, within it.
        assert_eq!(series.len(), 2, "{:?}", series.published.keys());
        assert!(matches!(
            series.plan(&hot, at(401)),
            Plan::Repeat { count: 101, .. }
        ));
    }

    #[test]
    fn a_key_used_again_and_again_does_not_grow_the_queue() {
        let mut series = Series::default();
        publish(&mut series, &key("first", "Verified"), at(0));
        let hot = key("hot", "Verified");
        for _ in 0..CAPACITY * 5 {
            publish(&mut series, &hot, at(1));
        }
        assert_eq!(series.len(), 2);
        assert!(series.order.len() <= 2 * CAPACITY, "{}", series.order.len());
        assert!(matches!(
            series.plan(&key("first", "Verified"), at(2)),
            Plan::Repeat { .. }
        ));
    }
}

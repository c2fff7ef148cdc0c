//! `why KIND/NAME`: an object's conditions in words with the user guide's meaning and "what to
//! do" for each reason ([`super::remedies`]), its Events, and for a child of a BulkRegistration
//! or a MemberAccount the parent's state. [`explain`] and [`render`] are pure; [`run`] reads.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use super::remedies::{self, Remedy};
use super::table::{Cell, Table, Tone, age, clip};
use super::{Kind, Out, PluginError, api_error};
use crate::api::conditions::READY;
use crate::api::labels::{BULK_REGISTRATION_LABEL, MEMBER_ACCOUNT_LABEL};
use crate::api::{BulkRegistration, LinkedAccount, MemberAccount};

/// Events shown, newest last.
const MAX_EVENTS: usize = 10;

/// What `why` says about one object (also its JSON/YAML form).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub conditions: Vec<Explained>,
    pub events: Vec<EventLine>,
    pub parent: Option<Parent>,
}

/// One condition, with the docs' rows for its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explained {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub since: Timestamp,
    /// Rows of the user guide about the reason (several when the docs tell situations apart).
    pub remedies: Vec<Advice>,
}

/// One row of the user guide's "Conditions and what to do".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Advice {
    pub when: String,
    pub meaning: String,
    pub what_to_do: String,
}

impl From<Remedy> for Advice {
    fn from(r: Remedy) -> Self {
        Self {
            when: r.qualifier,
            meaning: r.meaning,
            what_to_do: r.what_to_do,
        }
    }
}

/// An Event about the object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
    pub last: Option<Timestamp>,
}

/// The state of the object's parent (a BulkRegistration or MemberAccount).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Parent {
    pub kind: Kind,
    pub name: String,
    /// `None`: the parent could not be read (gone, or not readable for the caller).
    pub ready: Option<String>,
    pub message: String,
    pub operation: Option<String>,
}

/// The explanation of `conditions` of an object of `kind`, Ready first; `lookup` gives the
/// docs' rows for a reason (the embedded user guide in production).
pub fn explain(
    kind: Kind,
    conditions: &[Condition],
    lookup: impl Fn(&str, &str) -> Vec<Remedy>,
) -> Vec<Explained> {
    let mut sorted: Vec<&Condition> = conditions.iter().collect();
    sorted.sort_by_key(|c| (c.type_ != READY, c.type_.clone()));
    sorted
        .into_iter()
        .map(|c| Explained {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            since: c.last_transition_time.0,
            remedies: lookup(kind.as_str(), &c.reason)
                .into_iter()
                .map(Advice::from)
                .collect(),
        })
        .collect()
}

/// Events as lines, newest last, at most [`MAX_EVENTS`].
pub fn event_lines(events: &[Event]) -> Vec<EventLine> {
    let mut lines: Vec<EventLine> = events
        .iter()
        .map(|e| EventLine {
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
            count: e.count.unwrap_or(1),
            last: e
                .last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.first_timestamp.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0)),
        })
        .collect();
    lines.sort_by(|a, b| a.last.cmp(&b.last).then(a.reason.cmp(&b.reason)));
    let skip = lines.len().saturating_sub(MAX_EVENTS);
    lines.split_off(skip)
}

/// The explanation as text.
pub fn render(e: &Explanation, now: Timestamp, colour: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} {}/{}", e.kind.as_str(), e.namespace, e.name);
    if e.conditions.is_empty() {
        let _ = writeln!(
            out,
            "\nNo conditions yet: the operator has not reconciled it (is it running and watching this namespace?)."
        );
    }
    let mut explained: Vec<&str> = Vec::new();
    for c in &e.conditions {
        let tone = match (c.type_.as_str(), c.status.as_str()) {
            ("Reconciling", "True") => Tone::Busy,
            ("Reconciling" | "Stalled", "False") | (_, "True") if c.type_ != "Stalled" => {
                Tone::Good
            }
            ("Stalled", "False") => Tone::Good,
            _ => Tone::Bad,
        };
        let head = format!("{}={}", c.type_, c.status);
        let _ = writeln!(
            out,
            "\n{}  {}  (for {})",
            super::table::paint(&head, tone, colour),
            c.reason,
            age(Some(c.since), now)
        );
        if !c.message.is_empty() {
            let _ = writeln!(out, "  {}", c.message.replace('\n', "\n  "));
        }
        if explained.contains(&c.reason.as_str()) {
            continue;
        }
        explained.push(&c.reason);
        if c.remedies.is_empty() {
            let _ = writeln!(out, "  (the user guide has no entry for {})", c.reason);
        }
        for r in &c.remedies {
            let when = if r.when.is_empty() {
                String::new()
            } else {
                format!(" {}", r.when)
            };
            let _ = writeln!(out, "  Meaning{when}: {}", r.meaning);
            let _ = writeln!(out, "  What to do: {}", r.what_to_do);
        }
    }
    if let Some(p) = &e.parent {
        let _ = writeln!(out, "\nParent {} {}:", p.kind.as_str(), p.name);
        match &p.ready {
            None => {
                let _ = writeln!(out, "  {}", p.message);
            }
            Some(ready) => {
                let _ = writeln!(out, "  Ready={ready}");
                if !p.message.is_empty() {
                    let _ = writeln!(out, "  {}", p.message);
                }
                if let Some(op) = &p.operation {
                    let _ = writeln!(out, "  StackSet operation in flight: {op}");
                }
            }
        }
    }
    if e.events.is_empty() {
        let _ = writeln!(out, "\nEvents: none");
        return out;
    }
    let _ = writeln!(out, "\nEvents (newest last):");
    let mut table = Table::new(&["LAST SEEN", "TYPE", "REASON", "COUNT", "MESSAGE"]);
    for ev in &e.events {
        let tone = if ev.type_ == "Warning" {
            Tone::Bad
        } else {
            Tone::Plain
        };
        table.row(vec![
            age(ev.last, now).into(),
            Cell::toned(ev.type_.clone(), tone),
            ev.reason.clone().into(),
            ev.count.to_string().into(),
            clip(&ev.message, 120).into(),
        ]);
    }
    for line in table.render(colour).lines() {
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// What is read of the object: its conditions, UID and parent's name.
struct Subject {
    conditions: Vec<Condition>,
    uid: String,
    parent: Option<(Kind, String)>,
}

async fn subject(
    client: &Client,
    namespace: &str,
    kind: Kind,
    name: &str,
) -> Result<Subject, PluginError> {
    let scope = format!("namespace {namespace}");
    let missing = || PluginError::NotFound {
        kind: kind.as_str(),
        name: name.to_string(),
        namespace: namespace.to_string(),
    };
    let read = |e| {
        api_error(
            e,
            "get",
            &format!("{}s", kind.as_str().to_lowercase()),
            &scope,
        )
    };
    Ok(match kind {
        Kind::LinkedAccount => {
            let api: Api<LinkedAccount> = Api::namespaced(client.clone(), namespace);
            let o = api.get_opt(name).await.map_err(read)?.ok_or_else(missing)?;
            let labels = o.labels();
            let parent = labels
                .get(BULK_REGISTRATION_LABEL)
                .map(|p| (Kind::BulkRegistration, p.clone()))
                .or_else(|| {
                    labels
                        .get(MEMBER_ACCOUNT_LABEL)
                        .map(|p| (Kind::MemberAccount, p.clone()))
                });
            Subject {
                uid: o.uid().unwrap_or_default(),
                conditions: o.status.map(|s| s.conditions).unwrap_or_default(),
                parent,
            }
        }
        Kind::BulkRegistration => {
            let api: Api<BulkRegistration> = Api::namespaced(client.clone(), namespace);
            let o = api.get_opt(name).await.map_err(read)?.ok_or_else(missing)?;
            Subject {
                uid: o.uid().unwrap_or_default(),
                conditions: o.status.map(|s| s.conditions).unwrap_or_default(),
                parent: None,
            }
        }
        Kind::MemberAccount => {
            let api: Api<MemberAccount> = Api::namespaced(client.clone(), namespace);
            let o = api.get_opt(name).await.map_err(read)?.ok_or_else(missing)?;
            Subject {
                uid: o.uid().unwrap_or_default(),
                conditions: o.status.map(|s| s.conditions).unwrap_or_default(),
                parent: None,
            }
        }
    })
}

/// The parent's state; a parent the caller cannot read is said so, not an error.
async fn parent(client: &Client, namespace: &str, kind: Kind, name: &str) -> Parent {
    let found = match kind {
        Kind::BulkRegistration => Api::<BulkRegistration>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map(|o| {
                o.and_then(|o| o.status).map(|s| {
                    let op = s.operation.map(|o| {
                        format!("{} {} ({})", o.action, o.status.unwrap_or_default(), o.id)
                    });
                    (s.conditions, op)
                })
            }),
        _ => Api::<MemberAccount>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map(|o| o.and_then(|o| o.status).map(|s| (s.conditions, None))),
    };
    let unknown = |message: String| Parent {
        kind,
        name: name.to_string(),
        ready: None,
        message,
        operation: None,
    };
    match found {
        Err(e) => unknown(format!("cannot be read: {e}")),
        Ok(None) => unknown("not found, or no status yet".into()),
        Ok(Some((conditions, operation))) => {
            let ready = conditions.iter().find(|c| c.type_ == READY);
            Parent {
                kind,
                name: name.to_string(),
                ready: Some(
                    ready.map_or("Unknown".into(), |c| format!("{}/{}", c.status, c.reason)),
                ),
                message: ready.map(|c| c.message.clone()).unwrap_or_default(),
                operation,
            }
        }
    }
}

/// Reads the object, its Events and its parent, and prints the explanation.
pub async fn run(
    client: Client,
    namespace: &str,
    kind: Kind,
    name: &str,
    out: &mut Out<'_>,
) -> Result<(), PluginError> {
    let subject = subject(&client, namespace, kind, name).await?;
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let listed = events
        .list(&ListParams::default().fields(&format!("involvedObject.uid={}", subject.uid)))
        .await
        .map_err(|e| api_error(e, "list", "events", &format!("namespace {namespace}")))?;
    let parent = match &subject.parent {
        Some((kind, parent_name)) => Some(parent(&client, namespace, *kind, parent_name).await),
        None => None,
    };
    let explanation = Explanation {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
        conditions: explain(kind, &subject.conditions, remedies::lookup),
        events: event_lines(&listed.items),
        parent,
    };
    if out.structured(&explanation)? {
        return Ok(());
    }
    let text = render(&explanation, out.now, out.colour);
    out.writer.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn at(minutes_ago: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 - minutes_ago * 60).unwrap()
    }

    fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Time(at(5)),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn conditions_are_explained_ready_first_with_the_docs_rows_once_per_reason() {
        let conditions = [
            cond("Stalled", "True", "AccessDenied", "denied"),
            cond("Ready", "False", "AccessDenied", "denied"),
            cond("Reconciling", "False", "AccessDenied", ""),
        ];
        let explained = explain(Kind::LinkedAccount, &conditions, remedies::lookup);
        let types: Vec<_> = explained.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Reconciling", "Stalled"]);
        assert!(
            explained[0].remedies[0].what_to_do.contains("fix the role"),
            "{explained:?}"
        );
        let e = Explanation {
            kind: Kind::LinkedAccount,
            namespace: "team".into(),
            name: "w-2".into(),
            conditions: explained,
            events: vec![],
            parent: Some(Parent {
                kind: Kind::BulkRegistration,
                name: "w".into(),
                ready: Some("False/OperationRunning".into()),
                message: "operation op running".into(),
                operation: Some("Update RUNNING (op)".into()),
            }),
        };
        let text = render(&e, at(0), false);
        assert_eq!(text.matches("What to do:").count(), 1, "{text}");
        assert!(
            text.contains("Ready=False  AccessDenied  (for 5m)"),
            "{text}"
        );
        assert!(
            text.contains("Parent BulkRegistration w:\n  Ready=False/OperationRunning"),
            "{text}"
        );
        assert!(text.contains("Events: none"), "{text}");
    }

    #[test]
    fn an_unknown_reason_says_the_docs_have_no_entry() {
        let explained = explain(
            Kind::MemberAccount,
            &[cond("Ready", "False", "Mystery", "")],
            remedies::lookup,
        );
        let e = Explanation {
            kind: Kind::MemberAccount,
            namespace: "n".into(),
            name: "m".into(),
            conditions: explained,
            events: vec![],
            parent: None,
        };
        assert!(render(&e, at(0), false).contains("the user guide has no entry for Mystery"));
    }

    #[test]
    fn events_are_newest_last_and_capped() {
        let events: Vec<Event> = (0..15)
            .map(|i| Event {
                reason: Some(format!("R{i:02}")),
                last_timestamp: Some(Time(at(100 - i))),
                ..Event::default()
            })
            .collect();
        let lines = event_lines(&events);
        assert_eq!(lines.len(), MAX_EVENTS);
        assert_eq!(lines.first().unwrap().reason, "R05");
        assert_eq!(lines.last().unwrap().reason, "R14");
    }
}

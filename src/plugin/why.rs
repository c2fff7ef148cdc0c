//! `why KIND/NAME`: an object's conditions in words with the user guide's meaning and "what to
//! do" for each reason ([`super::remedies`]), its Events, and for a child of a BulkRegistration
//! or a MemberAccount the parent's state. [`explain`] and [`render`] are pure; [`run`] reads.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use super::remedies::{self, Remedy};
use super::table::{Cell, Table, Tone, age, clip};
use super::{Kind, Out, PluginError, api_error};
use crate::api::bulk_registration::StackSetOperation;
use crate::api::conditions::READY;
use crate::api::labels::{BULK_REGISTRATION_LABEL, MEMBER_ACCOUNT_LABEL};

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

/// What a condition of `type_` with `status` says, in words (kstatus types and the kinds' own).
pub fn in_words(type_: &str, status: &str) -> Option<&'static str> {
    Some(match (type_, status) {
        ("Ready", "True") => "it does what its spec asks",
        ("Ready", "False") => "it does not do what its spec asks (yet)",
        ("Ready", _) => "not known yet whether it does what its spec asks",
        ("Reconciling", "True") => "the operator is working on it: waiting helps",
        ("Reconciling", _) => "the operator is not working on it",
        ("Stalled", "True") => "the operator cannot get further by itself: a person must act",
        ("Stalled", _) => "not stuck",
        ("RoleAssumable", "True") => "the hub assumed the role and the identity is in this account",
        ("RoleAssumable", "False") => "the hub could not assume the role",
        ("RoleAssumable", _) => "not known whether the hub can assume the role",
        ("RoleDeployed", "True") => "the registration's StackSet deployed the role here",
        ("RoleDeployed", _) => "the role is not deployed here (yet)",
        ("StackSetReady", "True") => "the StackSet has the current template and settings",
        ("StackSetReady", _) => "the StackSet is not current (yet)",
        ("InstancesReady", "True") => "every target account has a current stack instance",
        ("InstancesReady", _) => "some target accounts lack a current stack instance",
        ("AccountCreated", "True") => "the AWS account exists",
        ("AccountCreated", _) => "the AWS account does not exist (yet)",
        ("RoleInSync", "True") => "the deployed role matches the template",
        ("RoleInSync", "False") => "the deployed role drifted from the template",
        _ => return None,
    })
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
        if let Some(words) = in_words(&c.type_, &c.status) {
            let _ = writeln!(out, "  In words: {words}.");
        }
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

/// Reads object `name` of `kind`; a 403 is worded for the caller.
async fn get(
    client: &Client,
    namespace: &str,
    kind: Kind,
    name: &str,
) -> Result<Option<DynamicObject>, PluginError> {
    let resource = kind.resource();
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
        .get_opt(name)
        .await
        .map_err(|e| {
            api_error(
                e,
                "get",
                &resource.plural,
                &format!("namespace {namespace}"),
            )
        })
}

/// `status.<field>` of a dynamic object, when it reads as `T`.
fn status_field<T: serde::de::DeserializeOwned>(o: &DynamicObject, field: &str) -> Option<T> {
    serde_json::from_value(o.data.get("status")?.get(field)?.clone()).ok()
}

/// The BulkRegistration or MemberAccount a LinkedAccount's labels name as its parent.
fn parent_of(o: &DynamicObject) -> Option<(Kind, String)> {
    let labels = o.labels();
    labels
        .get(BULK_REGISTRATION_LABEL)
        .map(|p| (Kind::BulkRegistration, p.clone()))
        .or_else(|| {
            labels
                .get(MEMBER_ACCOUNT_LABEL)
                .map(|p| (Kind::MemberAccount, p.clone()))
        })
}

/// The parent's state; a parent the caller cannot read is said so, not an error.
async fn parent(client: &Client, namespace: &str, kind: Kind, name: &str) -> Parent {
    let mut parent = Parent {
        kind,
        name: name.to_string(),
        ready: None,
        message: String::new(),
        operation: None,
    };
    match get(client, namespace, kind, name).await {
        Err(e) => parent.message = format!("cannot be read: {e}"),
        Ok(None) => parent.message = "not found".into(),
        Ok(Some(o)) => {
            let conditions: Vec<Condition> = status_field(&o, "conditions").unwrap_or_default();
            let ready = conditions.iter().find(|c| c.type_ == READY);
            parent.ready =
                Some(ready.map_or("Unknown".into(), |c| format!("{}/{}", c.status, c.reason)));
            parent.message = ready.map(|c| c.message.clone()).unwrap_or_default();
            parent.operation = status_field::<StackSetOperation>(&o, "operation").map(|op| {
                format!(
                    "{} {} ({})",
                    op.action,
                    op.status.unwrap_or_default(),
                    op.id
                )
            });
        }
    }
    parent
}

/// Reads the object, its Events and its parent, and prints the explanation.
pub async fn run(
    client: Client,
    namespace: &str,
    kind: Kind,
    name: &str,
    out: &mut Out<'_>,
) -> Result<(), PluginError> {
    let object =
        get(&client, namespace, kind, name)
            .await?
            .ok_or_else(|| PluginError::NotFound {
                kind: kind.as_str(),
                name: name.to_string(),
                namespace: namespace.to_string(),
            })?;
    let conditions: Vec<Condition> = status_field(&object, "conditions").unwrap_or_default();
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let uid = object.uid().unwrap_or_default();
    let listed = events
        .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
        .await
        .map_err(|e| api_error(e, "list", "events", &format!("namespace {namespace}")))?;
    let parent = match parent_of(&object).filter(|_| kind == Kind::LinkedAccount) {
        Some((kind, parent_name)) => Some(parent(&client, namespace, kind, &parent_name).await),
        None => None,
    };
    let explanation = Explanation {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
        conditions: explain(kind, &conditions, remedies::lookup),
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
#[path = "why_tests.rs"]
mod tests;

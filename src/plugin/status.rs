//! `status`: the fleet in one screen. Per BulkRegistration (and for LinkedAccounts of no
//! registration): accounts Ready and not Ready by reason, the StackSet operation in flight,
//! the last token rotation and the oldest verification; then the first failing accounts with
//! their reason and message. [`summarize`] and [`render`] are pure; [`run`] lists objects.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use super::table::{Cell, Table, Tone, age, clip};
use super::{Out, PluginError, api_error};
use crate::api::conditions::READY;
use crate::api::labels::BULK_REGISTRATION_LABEL;
use crate::api::{BulkRegistration, LinkedAccount};

/// The reason counted for an account whose Ready condition is not written yet.
pub const NO_STATUS: &str = "NoStatus";
/// How much of a message the failing table shows.
const MESSAGE_WIDTH: usize = 100;

/// The fleet as `status` reports it (also its JSON/YAML form).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fleet {
    /// Per registration, then the LinkedAccounts of no registration, by namespace and name.
    pub groups: Vec<Group>,
    pub total: Counts,
    /// The first failing accounts (the total is `total.notReady` summed).
    pub failing: Vec<Failing>,
}

/// One BulkRegistration and its children, or (`registration: None`) a namespace's
/// LinkedAccounts that no registration owns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub namespace: String,
    pub registration: Option<String>,
    /// The registration's `Ready` status and reason, e.g. `False/InstancesFailed`.
    pub state: Option<String>,
    pub counts: Counts,
    /// The StackSet operation in flight: action and status.
    pub operation: Option<String>,
    pub operation_started: Option<Timestamp>,
    pub last_rotation: Option<Timestamp>,
    pub oldest_verification: Option<Timestamp>,
}

/// Accounts by readiness.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub accounts: usize,
    pub ready: usize,
    /// Not Ready, by the Ready condition's reason.
    pub not_ready: BTreeMap<String, usize>,
}

impl Counts {
    fn add(&mut self, ready: Result<(), &str>) {
        self.accounts += 1;
        match ready {
            Ok(()) => self.ready += 1,
            Err(reason) => *self.not_ready.entry(reason.to_string()).or_default() += 1,
        }
    }

    fn merge(&mut self, other: &Counts) {
        self.accounts += other.accounts;
        self.ready += other.ready;
        for (reason, n) in &other.not_ready {
            *self.not_ready.entry(reason.clone()).or_default() += n;
        }
    }

    /// Accounts not Ready.
    pub fn failing(&self) -> usize {
        self.not_ready.values().sum()
    }
}

/// An account that is not Ready.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failing {
    pub namespace: String,
    pub name: String,
    pub account: String,
    pub registration: Option<String>,
    pub reason: String,
    pub message: String,
    /// When Ready last changed.
    pub since: Option<Timestamp>,
}

fn ready_of(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == READY)
}

/// The fleet from the listed objects; the first `max_failing` failing accounts are listed.
pub fn summarize(
    registrations: &[BulkRegistration],
    links: &[LinkedAccount],
    max_failing: usize,
) -> Fleet {
    // (namespace, registration) → group; `None` sorts first, so put standalone last below.
    let mut groups: BTreeMap<(String, Option<String>), Group> = BTreeMap::new();
    for bulk in registrations {
        let namespace = bulk.namespace().unwrap_or_default();
        let status = bulk.status.clone().unwrap_or_default();
        let state = ready_of(&status.conditions).map(|c| format!("{}/{}", c.status, c.reason));
        let operation = status.operation.as_ref();
        groups.insert(
            (namespace.clone(), Some(bulk.name_any())),
            Group {
                namespace,
                registration: Some(bulk.name_any()),
                state,
                operation: operation
                    .map(|o| format!("{} {}", o.action, o.status.as_deref().unwrap_or("STARTING"))),
                operation_started: operation.and_then(|o| o.started_at.as_ref().map(|t| t.0)),
                last_rotation: status.external_id_rotated_time.as_ref().map(|t| t.0),
                ..Group::default()
            },
        );
    }
    let mut failing = Vec::new();
    let mut sorted: Vec<&LinkedAccount> = links.iter().collect();
    sorted.sort_by_key(|l| (l.namespace(), l.name_any()));
    for link in sorted {
        let namespace = link.namespace().unwrap_or_default();
        let registration = link.labels().get(BULK_REGISTRATION_LABEL).cloned();
        let group = groups
            .entry((namespace.clone(), registration.clone()))
            .or_insert_with(|| Group {
                namespace: namespace.clone(),
                registration: registration.clone(),
                ..Group::default()
            });
        let status = link.status.clone().unwrap_or_default();
        let ready = ready_of(&status.conditions);
        let verified = status.last_verified_time.as_ref().map(|t| t.0);
        if let Some(v) = verified {
            group.oldest_verification = Some(group.oldest_verification.map_or(v, |o| o.min(v)));
        }
        match ready {
            Some(c) if c.status == "True" => group.counts.add(Ok(())),
            other => {
                let reason = other.map_or(NO_STATUS, |c| c.reason.as_str());
                group.counts.add(Err(reason));
                failing.push(Failing {
                    namespace: namespace.clone(),
                    name: link.name_any(),
                    account: link.spec.account_id.clone(),
                    registration,
                    reason: reason.to_string(),
                    message: other.map(|c| c.message.clone()).unwrap_or_default(),
                    since: other.map(|c| c.last_transition_time.0),
                });
            }
        }
    }
    let mut total = Counts::default();
    let (mut registered, mut standalone): (Vec<Group>, Vec<Group>) =
        groups.into_values().partition(|g| g.registration.is_some());
    registered.append(&mut standalone);
    for g in &registered {
        total.merge(&g.counts);
    }
    failing.truncate(max_failing);
    Fleet {
        groups: registered,
        total,
        failing,
    }
}

/// `AccessDenied=7 StackInstanceFailed=3`, most frequent first.
fn by_reason(counts: &Counts) -> String {
    let mut reasons: Vec<(&String, &usize)> = counts.not_ready.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let text: Vec<String> = reasons.iter().map(|(r, n)| format!("{r}={n}")).collect();
    if text.is_empty() {
        "-".into()
    } else {
        text.join(" ")
    }
}

fn state_tone(state: Option<&str>) -> Tone {
    match state {
        Some(s) if s.starts_with("True/") => Tone::Good,
        Some(s) if s.contains("Running") || s.contains("Pending") || s.contains("Verifying") => {
            Tone::Busy
        }
        Some(_) => Tone::Bad,
        None => Tone::Plain,
    }
}

/// The fleet as text: the registrations table, the total, the failing accounts.
/// `all_namespaces` adds a NAMESPACE column.
pub fn render(fleet: &Fleet, all_namespaces: bool, now: Timestamp, colour: bool) -> String {
    let mut headers = vec![
        "REGISTRATION",
        "STATE",
        "ACCOUNTS",
        "READY",
        "NOT READY BY REASON",
        "OPERATION",
        "LAST ROTATION",
        "OLDEST VERIFICATION",
    ];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let mut table = Table::new(&headers);
    let count_tone = |c: &Counts| {
        if c.failing() == 0 {
            Tone::Good
        } else {
            Tone::Bad
        }
    };
    for g in &fleet.groups {
        let mut row: Vec<Cell> = vec![
            g.registration
                .clone()
                .unwrap_or_else(|| "(none)".into())
                .into(),
            Cell::toned(
                g.state.clone().unwrap_or_else(|| "-".into()),
                state_tone(g.state.as_deref()),
            ),
            g.counts.accounts.to_string().into(),
            Cell::toned(g.counts.ready.to_string(), count_tone(&g.counts)),
            by_reason(&g.counts).into(),
            match &g.operation {
                Some(op) => Cell::toned(
                    format!("{op} {}", age(g.operation_started, now)),
                    Tone::Busy,
                ),
                None => "-".into(),
            },
            age(g.last_rotation, now).into(),
            age(g.oldest_verification, now).into(),
        ];
        if all_namespaces {
            row.insert(0, g.namespace.clone().into());
        }
        table.row(row);
    }
    let mut total: Vec<Cell> = vec![
        "TOTAL".into(),
        "".into(),
        fleet.total.accounts.to_string().into(),
        Cell::toned(fleet.total.ready.to_string(), count_tone(&fleet.total)),
        by_reason(&fleet.total).into(),
        "".into(),
        "".into(),
        "".into(),
    ];
    if all_namespaces {
        total.insert(0, "".into());
    }
    table.row(total);
    let mut out = table.render(colour);
    let failing = fleet.total.failing();
    if failing == 0 {
        let _ = writeln!(out, "\nEvery account is Ready.");
        return out;
    }
    let _ = writeln!(
        out,
        "\nFailing accounts ({} of {failing}; `why lacct/NAME` explains one):",
        fleet.failing.len()
    );
    let mut headers = vec![
        "NAME",
        "ACCOUNT",
        "REGISTRATION",
        "REASON",
        "SINCE",
        "MESSAGE",
    ];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let mut table = Table::new(&headers);
    for f in &fleet.failing {
        let mut row: Vec<Cell> = vec![
            f.name.clone().into(),
            f.account.clone().into(),
            f.registration.clone().unwrap_or_else(|| "-".into()).into(),
            Cell::toned(f.reason.clone(), Tone::Bad),
            age(f.since, now).into(),
            clip(&f.message, MESSAGE_WIDTH).into(),
        ];
        if all_namespaces {
            row.insert(0, f.namespace.clone().into());
        }
        table.row(row);
    }
    out.push_str(&table.render(colour));
    out
}

/// Lists the registrations and LinkedAccounts of `namespace` (all with `None`) and prints the
/// fleet.
pub async fn run(
    client: Client,
    namespace: Option<&str>,
    max_failing: usize,
    out: &mut Out<'_>,
) -> Result<(), PluginError> {
    let scope = namespace.map_or("all namespaces".to_string(), |n| format!("namespace {n}"));
    let (bulks, links): (Api<BulkRegistration>, Api<LinkedAccount>) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let params = ListParams::default();
    let registrations = bulks
        .list(&params)
        .await
        .map_err(|e| api_error(e, "list", "bulkregistrations", &scope))?
        .items;
    let links = links
        .list(&params)
        .await
        .map_err(|e| api_error(e, "list", "linkedaccounts", &scope))?
        .items;
    let fleet = summarize(&registrations, &links, max_failing);
    if out.structured(&fleet)? {
        return Ok(());
    }
    let text = if fleet.groups.is_empty() {
        format!("No BulkRegistrations or LinkedAccounts in {scope}.\n")
    } else {
        render(&fleet, namespace.is_none(), out.now, out.colour)
    };
    out.writer.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;

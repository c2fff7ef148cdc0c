//! Drift detection (`spec.drift`): when a check is due, its deterministic operation ID, which
//! instances it found drifted, whether they are redeployed, and what the registration and its
//! children report. All of it is pure but [`finished`] (which publishes the Events); the driver
//! ([`super::phases`]) starts the checks and the redeployments through [`super::operation`]
//! like any other operation — recorded in status first, never while another operation of the
//! registration runs.
//!
//! A check is due `checkInterval` after the previous one ended (the first one as soon as
//! nothing else is planned). Its ID covers the registration's UID and the interval's time slot
//! (`now / checkInterval`), so every interval has one ID and a retried start is the same
//! operation. A check that found drift is followed by at most one redeployment
//! (`remediation: Update`), whose ID covers the check's ID.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use kube::runtime::events::EventType;

use super::Pass;
use super::plan::{self, Desired, Step};
use super::template::fingerprint;
use crate::api::BulkRegistration;
use crate::api::bulk_registration::{
    BulkRegistrationStatus, DriftCheck, DriftRemediation, StackSetOperation, event,
};
use crate::aws::stacksets::{DriftStatus, Instance};

/// The registration's drift settings in effect: `None` when drift detection is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub interval: Duration,
    pub remediation: DriftRemediation,
}

/// The settings of `bulk`: its `checkInterval`, or `override_interval` (the operator's
/// `--drift-check-interval`, for tests) in its place when drift detection is on.
pub fn settings(bulk: &BulkRegistration, override_interval: Option<Duration>) -> Option<Settings> {
    let spec = bulk.spec.drift.as_ref()?;
    let interval = spec
        .check_interval
        .as_deref()?
        .parse::<kube::core::Duration>()
        .ok()
        .map(Duration::from)?;
    Some(Settings {
        interval: override_interval
            .unwrap_or(interval)
            .max(Duration::from_secs(1)),
        remediation: spec.remediation,
    })
}

/// Whether a check is due: none ever started, or the last one ended `interval` ago (started,
/// when it never recorded an end). Counting from the end keeps every finished check in
/// `lastDriftCheck` for a whole interval, even when a check takes longer than the interval
/// (a large fleet, a slow region): the pass that records an end never starts the next one.
pub fn due(last: Option<&DriftCheck>, interval: Duration, now: Timestamp) -> bool {
    match last.and_then(|c| c.completed_at.as_ref().or(c.started_at.as_ref())) {
        Some(since) => now.duration_since(since.0).unsigned_abs() >= interval,
        None => true,
    }
}

/// The check's OperationId: one per registration and time slot of `interval`.
pub fn check_id(uid: &str, interval: Duration, now: Timestamp) -> String {
    let slot = now.as_second().max(0).unsigned_abs() / interval.as_secs().max(1);
    let parts = [
        uid,
        "DetectDrift",
        &interval.as_secs().to_string(),
        &slot.to_string(),
    ];
    format!("al-detectdrift-{}", fingerprint(&parts))
}

/// The redeployment's OperationId: one per check and batch.
pub fn remediation_id(check: &str, step: &Step) -> String {
    let accounts = step
        .batch()
        .map(|b| b.targets.accounts.join(","))
        .unwrap_or_default();
    format!(
        "al-remediatedrift-{}",
        fingerprint(&[check, "RemediateDrift", &accounts])
    )
}

/// Target instances (wanted account and region) the last check found DRIFTED.
pub fn drifted<'a>(desired: &Desired, instances: &'a [Instance]) -> Vec<&'a Instance> {
    instances
        .iter()
        .filter(|i| {
            i.drift_status == DriftStatus::Drifted
                && desired.accounts.contains(&i.account)
                && desired.regions.contains(&i.region)
        })
        .collect()
}

/// Target accounts with a drifted instance.
pub fn drifted_accounts(desired: &Desired, instances: &[Instance]) -> BTreeSet<String> {
    drifted(desired, instances)
        .into_iter()
        .map(|i| i.account.clone())
        .collect()
}

/// The drift operation to start when nothing else is planned: the redeployment of what the
/// last (finished) check found drifted, once per check, with `remediation: Update`; else a
/// check when one is due. Never while an operation of the registration is in flight.
pub fn next(
    settings: &Settings,
    status: &BulkRegistrationStatus,
    desired: &Desired,
    instances: &[Instance],
    uid: &str,
    now: Timestamp,
) -> Option<(Step, String)> {
    if status.operation.is_some() {
        return None;
    }
    let last = status.last_drift_check.as_ref();
    if settings.remediation == DriftRemediation::Update
        && let Some(check) = last.filter(|c| c.completed_at.is_some())
        && check.remediation_operation_id.is_none()
    {
        let pairs: Vec<(&str, &str)> = drifted(desired, instances)
            .into_iter()
            .map(|i| (i.account.as_str(), i.region.as_str()))
            .collect();
        if let Some(batch) = plan::update_batch(desired, instances, &pairs) {
            let step = Step::RemediateDrift(batch);
            let id = remediation_id(&check.operation_id, &step);
            return Some((step, id));
        }
    }
    due(last, settings.interval, now)
        .then(|| (Step::DetectDrift, check_id(uid, settings.interval, now)))
}

/// What a drift operation that was started or refused changes in `lastDriftCheck`: a check
/// is recorded as started (a refused one as ended, so that it waits for the next interval); a
/// redeployment is remembered on the check it answers, so it is sent once.
pub fn after_start(
    status: &mut BulkRegistrationStatus,
    record: &StackSetOperation,
    refused: bool,
    now: Timestamp,
) {
    match record.action.as_str() {
        "DetectDrift" => {
            status.last_drift_check = Some(DriftCheck {
                operation_id: record.id.clone(),
                started_at: record.started_at.clone(),
                completed_at: refused.then_some(Time(now)),
                drifted: None,
                remediation_operation_id: None,
            });
        }
        "RemediateDrift" => {
            if let Some(check) = status.last_drift_check.as_mut() {
                check.remediation_operation_id = Some(record.id.clone());
            }
        }
        _ => {}
    }
}

/// `lastDriftCheck` once check `op` ended: when it ended and how many target accounts it found
/// drifted (from the instances listed after it ended).
pub fn completed(op: &StackSetOperation, drifted: usize) -> DriftCheck {
    DriftCheck {
        operation_id: op.id.clone(),
        started_at: op.started_at.clone(),
        completed_at: op.ended_at.clone(),
        drifted: Some(i32::try_from(drifted).unwrap_or(i32::MAX)),
        remediation_operation_id: None,
    }
}

/// The drift operation a pass with nothing else planned starts, if any ([`next`] with the
/// registration's settings).
pub fn due_for(
    pass: &Pass<'_>,
    desired: &Desired,
    instances: &[Instance],
    uid: &str,
) -> Option<(Step, String)> {
    let settings = settings(pass.bulk, pass.ctx.settings.drift_check_interval)?;
    next(&settings, &pass.next, desired, instances, uid, pass.now)
}

/// `summary.drifted`: target accounts with a drifted instance, with drift detection on.
pub fn summary(bulk: &BulkRegistration, desired: &Desired, instances: &[Instance]) -> Option<i32> {
    settings(bulk, None)?;
    let drifted = drifted_accounts(desired, instances).len();
    Some(i32::try_from(drifted).unwrap_or(i32::MAX))
}

/// After drift operation `op` ended (the instances listed since): the check's findings in
/// `lastDriftCheck` and an Event when it found drift; an Event when a redeployment succeeded.
pub async fn finished(
    pass: &mut Pass<'_>,
    desired: &Desired,
    instances: &[Instance],
    op: &StackSetOperation,
) {
    match op.action.as_str() {
        "DetectDrift" => {
            let accounts = drifted_accounts(desired, instances);
            if let Some(check) = pass.next.last_drift_check.as_mut() {
                check.drifted = Some(i32::try_from(accounts.len()).unwrap_or(i32::MAX));
            }
            if !accounts.is_empty() {
                let note = note(&op.id, &accounts);
                pass.publish(EventType::Warning, event::DRIFT_DETECTED, &note)
                    .await;
            }
        }
        "RemediateDrift" => {
            let ok = pass
                .next
                .last_operation
                .as_ref()
                .and_then(|o| o.status.as_deref())
                == Some("SUCCEEDED");
            if ok {
                let note = format!(
                    "redeployed the template to {} drifted account(s) with operation {}",
                    op.accounts, op.id
                );
                pass.publish(EventType::Normal, event::DRIFT_REMEDIATED, &note)
                    .await;
            }
        }
        _ => {}
    }
}

/// The drift status a child reports (`status.stackInstance.driftStatus`): only with drift
/// detection on, and only what a check found (NOT_CHECKED and nothing are left out).
pub fn reported(on: bool, status: &DriftStatus) -> Option<String> {
    let checked = matches!(
        status,
        DriftStatus::Drifted | DriftStatus::InSync | DriftStatus::Unknown
    );
    (on && checked).then(|| status.to_string())
}

/// The Event note of a check that found drift: how many, and the first accounts.
pub fn note(check: &str, accounts: &BTreeSet<String>) -> String {
    let shown: Vec<&str> = accounts.iter().take(10).map(String::as_str).collect();
    let more = accounts.len().saturating_sub(shown.len());
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "drift check {check} found {} role(s) changed by hand: {}{tail}",
        accounts.len(),
        shown.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::bulk_registration::StackSetOperation;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn desired() -> Desired {
        Desired {
            accounts: ["111111111111", "222222222222", "333333333333"]
                .map(String::from)
                .into(),
            regions: vec!["eu-west-1".into()],
            ..Desired::default()
        }
    }

    fn instances(drift: [&str; 3]) -> Vec<Instance> {
        desired()
            .accounts
            .iter()
            .zip(drift)
            .map(|(a, d)| Instance {
                account: a.clone(),
                region: "eu-west-1".into(),
                status: "CURRENT".into(),
                detailed_status: Some("SUCCEEDED".into()),
                drift_status: d.into(),
                ..Instance::default()
            })
            .collect()
    }

    fn check(started: i64, completed: Option<i64>) -> DriftCheck {
        DriftCheck {
            operation_id: "al-detectdrift-1".into(),
            started_at: Some(Time(at(started))),
            completed_at: completed.map(|c| Time(at(c))),
            drifted: None,
            remediation_operation_id: None,
        }
    }

    fn settings(remediation: DriftRemediation) -> Settings {
        Settings {
            interval: HOUR,
            remediation,
        }
    }

    #[test]
    fn a_check_is_due_first_and_then_once_per_interval() {
        let cases = [
            (None, 1_000, true),
            (Some(check(1_000, Some(1_100))), 1_100 + 3_599, false),
            (Some(check(1_000, Some(1_100))), 1_100 + 3_600, true),
            // A check that ran longer than the interval: the next one waits a whole interval.
            (Some(check(1_000, Some(9_000))), 9_001, false),
            (Some(check(1_000, Some(9_000))), 9_000 + 3_600, true),
            (Some(check(1_000, None)), 1_000 + 3_599, false),
            (Some(check(1_000, None)), 9_000, true),
        ];
        for (last, now, want) in cases {
            assert_eq!(due(last.as_ref(), HOUR, at(now)), want, "{last:?} at {now}");
        }
    }

    #[test]
    fn check_ids_are_one_per_slot_and_registration() {
        let a = check_id("uid-1", HOUR, at(7_200));
        assert_eq!(a, check_id("uid-1", HOUR, at(7_200 + 3_599)));
        assert_ne!(a, check_id("uid-1", HOUR, at(7_200 + 3_600)));
        assert_ne!(a, check_id("uid-2", HOUR, at(7_200)));
        assert!(a.starts_with("al-detectdrift-"), "{a}");
        assert!(a.len() <= 128 && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn nothing_starts_while_an_operation_is_in_flight() {
        let status = BulkRegistrationStatus {
            operation: Some(StackSetOperation {
                id: "al-create".into(),
                action: "Create".into(),
                ..StackSetOperation::default()
            }),
            last_drift_check: Some(check(0, Some(10))),
            ..BulkRegistrationStatus::default()
        };
        let drifted = instances(["IN_SYNC", "DRIFTED", "IN_SYNC"]);
        for remediation in [DriftRemediation::None, DriftRemediation::Update] {
            let next = next(
                &settings(remediation),
                &status,
                &desired(),
                &drifted,
                "u",
                at(99_999),
            );
            assert_eq!(next, None, "{remediation:?}");
        }
    }

    #[test]
    fn drifted_instances_are_redeployed_once_per_check_with_update_only() {
        let drifted = instances(["DRIFTED", "IN_SYNC", "DRIFTED"]);
        let mut status = BulkRegistrationStatus {
            last_drift_check: Some(check(1_000, Some(1_100))),
            ..BulkRegistrationStatus::default()
        };
        let now = at(1_200);
        // None: report only; the next check waits for its interval.
        let none = settings(DriftRemediation::None);
        assert_eq!(next(&none, &status, &desired(), &drifted, "u", now), None);
        // Update: exactly the drifted accounts, in one operation.
        let update = settings(DriftRemediation::Update);
        let Some((Step::RemediateDrift(batch), id)) =
            next(&update, &status, &desired(), &drifted, "u", now)
        else {
            panic!("a redeployment expected");
        };
        assert_eq!(batch.targets.accounts, ["111111111111", "333333333333"]);
        assert!(id.starts_with("al-remediatedrift-"), "{id}");
        // Started: not again for the same check.
        let record = StackSetOperation {
            id: id.clone(),
            action: "RemediateDrift".into(),
            ..StackSetOperation::default()
        };
        after_start(&mut status, &record, false, now);
        assert_eq!(next(&update, &status, &desired(), &drifted, "u", now), None);
        // A check still running is not acted on.
        status.last_drift_check = Some(check(1_000, None));
        assert_eq!(next(&update, &status, &desired(), &drifted, "u", now), None);
    }

    #[test]
    fn a_started_or_refused_check_is_recorded_and_waits_for_the_next_interval() {
        for refused in [false, true] {
            let mut status = BulkRegistrationStatus::default();
            let (step, id) = next(
                &settings(DriftRemediation::Update),
                &status,
                &desired(),
                &instances(["IN_SYNC"; 3]),
                "u",
                at(5_000),
            )
            .unwrap();
            assert_eq!(step, Step::DetectDrift);
            let record = StackSetOperation {
                id: id.clone(),
                action: "DetectDrift".into(),
                started_at: Some(Time(at(5_000))),
                ended_at: Some(Time(at(5_000))),
                ..StackSetOperation::default()
            };
            after_start(&mut status, &record, refused, at(5_000));
            let check = status.last_drift_check.as_ref().unwrap();
            assert_eq!(check.operation_id, id);
            assert_eq!(check.completed_at.is_some(), refused);
            let later = at(5_000 + 60);
            let settings = settings(DriftRemediation::Update);
            let in_sync = instances(["IN_SYNC"; 3]);
            assert_eq!(
                next(&settings, &status, &desired(), &in_sync, "u", later),
                None
            );
        }
    }

    #[test]
    fn children_report_what_a_check_found_when_drift_detection_is_on() {
        let cases = [
            (true, "DRIFTED", Some("DRIFTED")),
            (true, "IN_SYNC", Some("IN_SYNC")),
            (true, "UNKNOWN", Some("UNKNOWN")),
            (true, "NOT_CHECKED", None),
            (true, "", None),
            (false, "DRIFTED", None),
        ];
        for (on, status, want) in cases {
            let got = reported(on, &DriftStatus::from(status));
            assert_eq!(got.as_deref(), want, "{on} {status}");
        }
    }

    #[test]
    fn only_target_instances_count_as_drifted() {
        let mut all = instances(["DRIFTED", "DRIFTED", "IN_SYNC"]);
        all[1].region = "us-east-1".into();
        let accounts = drifted_accounts(&desired(), &all);
        assert_eq!(accounts, BTreeSet::from(["111111111111".to_string()]));
        let note = note("al-detectdrift-1", &accounts);
        assert!(
            note.contains("1 role(s)") && note.contains("111111111111"),
            "{note}"
        );
    }

    #[test]
    fn a_running_check_leaves_the_headline_to_the_instances_and_children() {
        use crate::controller::bulk_registration::status::Headline;
        let message = || "operation running".to_string();
        assert!(matches!(
            Headline::running("DetectDrift", message()),
            Headline::Summary
        ));
        for action in ["Create", "Update", "RemediateDrift", "UpdateStackSet"] {
            assert!(
                matches!(Headline::running(action, message()), Headline::Busy { .. }),
                "{action}"
            );
        }
    }
}

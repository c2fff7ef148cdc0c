//! RoleInSync: what the registration's last drift check found for a deployed link's role.

use super::verdict::{Deployment, Verdict};
use crate::api::conditions::ROLE_IN_SYNC;
use crate::api::linked_account::{StackInstanceRef, reason};
use crate::controller::conditions::{Desired, Status};

/// RoleInSync from the drift status the registration reported on a deployed link: True
/// IN_SYNC, False DRIFTED, Unknown otherwise; none without drift detection. It never changes
/// Ready: a role changed by hand is still verified like any other, and the registration's
/// `drift.remediation` decides whether it is redeployed.
pub fn role_in_sync(
    deployment: &Deployment,
    instance: Option<&StackInstanceRef>,
) -> Option<Desired> {
    let drift = instance.and_then(|i| i.drift_status.as_deref())?;
    if *deployment != Deployment::Deployed {
        return None;
    }
    let (status, why, message) = match drift {
        "IN_SYNC" => (
            Status::True,
            reason::IN_SYNC,
            "the last drift check found the role as the template deploys it",
        ),
        "DRIFTED" => (
            Status::False,
            reason::DRIFTED,
            "the last drift check found the role changed outside the StackSet (by hand)",
        ),
        _ => (
            Status::Unknown,
            reason::DRIFT_UNKNOWN,
            "the last drift check could not compare the role with the template",
        ),
    };
    Some(Desired::new(ROLE_IN_SYNC, status, why, message))
}

/// Adds RoleInSync (when the registration reported drift) to a verdict for a deployed link.
pub fn with_drift(
    mut verdict: Verdict,
    deployment: &Deployment,
    instance: Option<&StackInstanceRef>,
) -> Verdict {
    if let (Some(c), Some(in_sync)) = (
        verdict.conditions.as_mut(),
        role_in_sync(deployment, instance),
    ) {
        c.push(in_sync);
    }
    verdict
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::conditions::READY;

    #[test]
    fn role_in_sync_follows_the_reported_drift_of_a_deployed_role_only() {
        let instance = |drift: Option<&str>| StackInstanceRef {
            stack_set: "fleet".into(),
            region: "eu-west-1".into(),
            status: Some("CURRENT".into()),
            detailed_status: Some("SUCCEEDED".into()),
            drift_status: drift.map(str::to_string),
            ..StackInstanceRef::default()
        };
        let waiting = Deployment::Waiting("pending".into());
        let cases = [
            (
                Deployment::Deployed,
                Some("IN_SYNC"),
                Some((Status::True, reason::IN_SYNC)),
            ),
            (
                Deployment::Deployed,
                Some("DRIFTED"),
                Some((Status::False, reason::DRIFTED)),
            ),
            (
                Deployment::Deployed,
                Some("UNKNOWN"),
                Some((Status::Unknown, reason::DRIFT_UNKNOWN)),
            ),
            (Deployment::Deployed, None, None),
            (waiting, Some("DRIFTED"), None),
        ];
        for (deployment, drift, want) in cases {
            let i = instance(drift);
            let got = role_in_sync(&deployment, Some(&i)).map(|d| (d.status, d.reason.clone()));
            let want = want.map(|(s, r)| (s, r.to_string()));
            assert_eq!(got, want, "{deployment:?} {drift:?}");
        }
        // Drift never changes Ready: only RoleInSync is added.
        let verdict = Verdict {
            conditions: Some(vec![Desired::new(READY, Status::True, "Verified", "")]),
            requeue_after: Duration::from_secs(60),
            retrying: false,
        };
        let drifted = instance(Some("DRIFTED"));
        let out = with_drift(verdict, &Deployment::Deployed, Some(&drifted));
        let conds = out.conditions.unwrap();
        assert_eq!(conds.len(), 2);
        assert_eq!((conds[0].type_, conds[0].status), (READY, Status::True));
        assert_eq!(
            (conds[1].type_, conds[1].status),
            (ROLE_IN_SYNC, Status::False)
        );
    }
}

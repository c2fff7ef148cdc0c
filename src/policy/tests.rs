//! Table tests of the evaluation: every field, the all-or-nothing rule, what needs reads and
//! what is refused without any.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::api::{BulkRegistration, LinkedAccount, MemberAccount};

const NS: &str = "team-a";

fn policy(name: &str, spec: Value) -> LinkPolicy {
    LinkPolicy::new(
        name,
        serde_json::from_value(spec).expect("a valid LinkPolicy spec"),
    )
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

fn link(spec: Value) -> Ask {
    let link = LinkedAccount::new("l", serde_json::from_value(spec).unwrap());
    Ask::Link(LinkAsk::of(&link))
}

fn bulk(spec: Value) -> Ask {
    let mut full = json!({"stackSet": {"permissionModel": "ServiceManaged"}});
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    let bulk = BulkRegistration::new("b", serde_json::from_value(full).unwrap());
    Ask::Bulk(BulkAsk::of(&bulk))
}

fn member(spec: Value) -> Ask {
    let mut full = json!({"accountName": "n", "email": "x@example.com", "parentId": "ou-ab12-11111111",
                          "roleName": "OrganizationAccountAccessRole"});
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    let member = MemberAccount::new("m", serde_json::from_value(full).unwrap());
    Ask::Member(MemberAsk::of(&member))
}

fn decide(ask: &Ask, policies: &[LinkPolicy], facts: &Facts) -> Verdict {
    let labels = labels(&[("team", "a")]);
    let ns = Namespace {
        name: NS,
        labels: &labels,
    };
    let refs: Vec<&LinkPolicy> = policies.iter().collect();
    evaluate(ask, ns, &refs, facts)
}

fn refused(verdict: &Verdict) -> &str {
    match verdict {
        Verdict::NotPermitted { message } => message,
        other => panic!("expected NotPermitted, got {other:?}"),
    }
}

fn within(pairs: &[(&str, &str, bool)]) -> Facts {
    Facts {
        within: pairs
            .iter()
            .map(|(id, unit, yes)| (((*id).into(), (*unit).into()), *yes))
            .collect(),
        ..Facts::default()
    }
}

const A: &str = "111111111111";
const B: &str = "222222222222";
const FOREIGN: &str = "999999999999";
const OU: &str = "ou-ab12-11111111";
const NESTED: &str = "ou-ab12-22222222";
const ROOT: &str = "r-ab12";

/// What a team's platform owner grants: two accounts, one OU, the built-in template with
/// read-only policies, names starting `team-a-`.
fn team_a() -> LinkPolicy {
    policy(
        "team-a",
        json!({
            "namespaces": [NS],
            "accounts": {"ids": [A], "organizationalUnitIds": [OU]},
            "roleNames": ["AccountLinkerAccess", "team-a-*", "OrganizationAccountAccessRole"],
            "bulkRegistrations": {
                "trustedPrincipals": [B],
                "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnly*"],
                "stackSetNamePrefixes": ["team-a-"],
                "maxTargets": 3,
            },
            "memberAccounts": {"parentIds": [OU], "emailDomains": ["example.com"], "maxAccounts": 2},
        }),
    )
}

#[test]
fn policies_select_namespaces_by_name_or_labels() {
    let ns_labels = labels(&[("team", "a"), ("env", "prod")]);
    let ns = Namespace {
        name: NS,
        labels: &ns_labels,
    };
    let table = [
        (json!({"namespaces": [NS]}), true),
        (json!({"namespaces": ["team-b"]}), false),
        (json!({"namespaceSelector": {}}), true),
        (
            json!({"namespaceSelector": {"matchLabels": {"team": "a"}}}),
            true,
        ),
        (
            json!({"namespaceSelector": {"matchLabels": {"team": "b"}}}),
            false,
        ),
        (
            json!({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}}),
            true,
        ),
        (
            json!({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}}),
            false,
        ),
        (
            json!({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "Bogus"}]}}),
            false,
        ),
        (
            json!({"namespaces": ["team-b"], "namespaceSelector": {"matchLabels": {"env": "prod"}}}),
            true,
        ),
    ];
    for (spec, want) in table {
        assert_eq!(selects(&policy("p", spec.clone()), ns), want, "{spec}");
    }
}

#[test]
fn a_namespace_no_policy_selects_may_do_nothing() {
    let other = policy(
        "team-b",
        json!({"namespaces": ["team-b"], "accounts": {"ids": ["*"]}}),
    );
    for policies in [vec![], vec![other]] {
        let verdict = decide(&link(json!({"accountId": A})), &policies, &Facts::default());
        assert_eq!(refused(&verdict), "no LinkPolicy selects namespace team-a");
    }
}

#[test]
fn linked_accounts_need_a_listed_account_and_a_permitted_role() {
    let policies = [team_a()];
    let none = Facts::default();
    let permitted = |policy: &str| Verdict::Permitted {
        policy: policy.into(),
    };
    // (spec, verdict without reads, text the refusal must contain)
    let table = [
        (json!({"accountId": A}), Some(permitted("team-a")), ""),
        (
            json!({"accountId": A, "roleName": "team-a-deploy"}),
            Some(permitted("team-a")),
            "",
        ),
        (
            json!({"accountId": A, "roleArn": format!("arn:aws:iam::{A}:role/ops/team-a-ops")}),
            Some(permitted("team-a")),
            "",
        ),
        (
            json!({"accountId": A, "roleName": "Admin"}),
            None,
            "spec.roleName=Admin is not permitted: LinkPolicy team-a allows roleNames [AccountLinkerAccess, team-a-*, OrganizationAccountAccessRole]",
        ),
        (
            json!({"accountId": A, "roleArn": format!("arn:aws:iam::{A}:role/team-a/Admin")}),
            None,
            "spec.roleArn=arn:aws:iam::111111111111:role/team-a/Admin is not permitted",
        ),
    ];
    for (spec, want, text) in table {
        let verdict = decide(&link(spec.clone()), &policies, &none);
        match want {
            Some(want) => assert_eq!(verdict, want, "{spec}"),
            None => assert!(refused(&verdict).contains(text), "{spec}: {verdict:?}"),
        }
    }
}

#[test]
fn an_account_outside_the_listed_ids_is_looked_up_under_the_policy_ous() {
    let policies = [team_a()];
    let ask = link(json!({"accountId": FOREIGN}));
    let verdict = decide(&ask, &policies, &Facts::default());
    let Verdict::Needs(needs) = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(
        needs.within.into_iter().collect::<Vec<_>>(),
        [(FOREIGN.to_string(), OU.to_string())]
    );
    let yes = within(&[(FOREIGN, OU, true)]);
    assert_eq!(
        decide(&ask, &policies, &yes),
        Verdict::Permitted {
            policy: "team-a".into()
        }
    );
    let no = within(&[(FOREIGN, OU, false)]);
    let message = refused(&decide(&ask, &policies, &no)).to_string();
    assert_eq!(
        message,
        "spec.accountId=999999999999 is not permitted: LinkPolicy team-a allows accounts ids [111111111111] and organizationalUnitIds [ou-ab12-11111111]"
    );
    // A policy without OUs refuses without asking.
    let ids_only = policy("ids", json!({"namespaces": [NS], "accounts": {"ids": [A]}}));
    assert!(matches!(
        decide(&ask, &[ids_only], &Facts::default()),
        Verdict::NotPermitted { .. }
    ));
    // A listed root and `*` hold every account.
    for accounts in [
        json!({"organizationalUnitIds": [ROOT]}),
        json!({"ids": ["*"]}),
    ] {
        let wide = policy("wide", json!({"namespaces": [NS], "accounts": accounts}));
        assert!(matches!(
            decide(&ask, &[wide], &Facts::default()),
            Verdict::Permitted { .. }
        ));
    }
}

/// The escalation a BulkRegistration author could attempt, field by field: each is refused
/// from the spec alone, without a single read.
#[test]
fn escalating_registrations_are_refused_without_any_read() {
    let policies = [team_a()];
    let table = [
        (
            json!({"template": {"builtin": {"trustedAccountId": FOREIGN}}, "targets": {"accounts": [A]}}),
            "spec.template.builtin.trustedAccountId=999999999999 is not permitted: LinkPolicy team-a allows trustedPrincipals [222222222222]",
        ),
        (
            json!({"template": {"builtin": {"managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}}, "targets": {"accounts": [A]}}),
            "spec.template.builtin.managedPolicyArns=arn:aws:iam::aws:policy/AdministratorAccess is not permitted: LinkPolicy team-a allows managedPolicyArns [arn:aws:iam::aws:policy/ReadOnly*]",
        ),
        (
            json!({"template": {"configMapRef": {"name": "t", "key": "k"}}, "targets": {"accounts": [A]}}),
            "spec.template.configMapRef is not permitted: LinkPolicy team-a allows templateSources [Builtin]",
        ),
        (
            json!({"template": {"url": "https://b.s3.amazonaws.com/t.yaml"}, "targets": {"accounts": [A]}}),
            "spec.template.url is not permitted",
        ),
        (
            json!({"targets": {"organizationalUnitIds": [ROOT]}}),
            "spec.targets.organizationalUnitIds=r-ab12 is not permitted: LinkPolicy team-a allows accounts ids [111111111111] and organizationalUnitIds [ou-ab12-11111111]",
        ),
        (
            json!({"template": {"builtin": {"roleName": "Admin"}}, "targets": {"accounts": [A]}}),
            "spec.template.builtin.roleName=Admin is not permitted",
        ),
        (
            json!({"stackSet": {"permissionModel": "ServiceManaged", "name": "prod-roles"}, "targets": {"accounts": [A]}}),
            "spec.stackSet.name=prod-roles is not permitted: LinkPolicy team-a allows stackSetNamePrefixes [team-a-]",
        ),
        (
            json!({"stackSet": {"permissionModel": "ServiceManaged", "name": "team-a-x", "adopt": true}, "targets": {"accounts": [A]}}),
            "spec.stackSet.adopt=true is not permitted: LinkPolicy team-a does not allow stackSetAdoption",
        ),
        (
            json!({"stackSet": {"permissionModel": "SelfManaged"}, "import": {"stackName": "linker-role"}, "targets": {"accounts": [A]}}),
            "spec.import.stackName=linker-role is not permitted: LinkPolicy team-a allows no import (no importStackNames)",
        ),
        (
            json!({"targets": {"accounts": [A], "includeManagementAccount": true}}),
            "spec.targets.includeManagementAccount=true is not permitted: LinkPolicy team-a does not allow managementAccount",
        ),
        (
            json!({"targets": {"accounts": [A, B, "333333333333", "444444444444"]}}),
            "spec.targets.accounts (4 accounts) is not permitted: LinkPolicy team-a allows maxTargets 3",
        ),
    ];
    for (spec, text) in table {
        let verdict = decide(&bulk(spec.clone()), &policies, &Facts::default());
        let message = refused(&verdict);
        assert!(message.contains(text), "{spec}:\n{message}\nlacks\n{text}");
    }
}

#[test]
fn a_registration_within_the_policy_is_permitted() {
    let policies = [team_a()];
    let ask = bulk(json!({
        "stackSet": {"permissionModel": "ServiceManaged", "name": "team-a-roles"},
        "template": {"builtin": {"trustedAccountId": B, "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}},
        "targets": {"accounts": [A]},
    }));
    // maxTargets needs the resolved count.
    assert_eq!(
        decide(&ask, &policies, &Facts::default()),
        Verdict::Needs(Needs {
            targets: true,
            ..Needs::default()
        })
    );
    let resolved = |count| Facts {
        targets: Some(Targets {
            count,
            listed: [A.to_string()].into(),
        }),
        ..Facts::default()
    };
    assert!(matches!(
        decide(&ask, &policies, &resolved(3)),
        Verdict::Permitted { .. }
    ));
    assert!(refused(&decide(&ask, &policies, &resolved(4))).contains(
        "spec.targets (4 accounts once resolved) is not permitted: LinkPolicy team-a allows maxTargets 3"
    ));
    // The default (built-in, derived name, no extra trust) needs nothing beyond the targets.
    let unlimited = policy(
        "plain",
        json!({"namespaces": [NS], "accounts": {"ids": [A]}, "bulkRegistrations": {}}),
    );
    assert!(matches!(
        decide(
            &bulk(json!({"targets": {"accounts": [A]}})),
            std::slice::from_ref(&unlimited),
            &Facts::default()
        ),
        Verdict::Permitted { .. }
    ));
    // A given name needs a prefix; none listed means derived names only.
    let named = bulk(
        json!({"stackSet": {"permissionModel": "ServiceManaged", "name": "mine"}, "targets": {"accounts": [A]}}),
    );
    assert!(
        refused(&decide(&named, &[unlimited], &Facts::default()))
            .contains("allows only derived StackSet names (no stackSetNamePrefixes)")
    );
}

#[test]
fn targets_are_checked_against_the_account_scope() {
    let policies = [team_a()];
    // An OU nested under the policy's OU is asked about, then permitted.
    let ask = bulk(json!({"targets": {"organizationalUnitIds": [NESTED]}}));
    let Verdict::Needs(needs) = decide(&ask, &policies, &Facts::default()) else {
        panic!()
    };
    assert_eq!(needs.within.len(), 1);
    assert!(
        !needs.targets,
        "targets are resolved only once nothing cheaper can refuse"
    );
    let mut facts = within(&[(NESTED, OU, true)]);
    assert!(matches!(decide(&ask, &policies, &facts), Verdict::Needs(n) if n.targets));
    facts.targets = Some(Targets {
        count: 2,
        listed: Default::default(),
    });
    assert!(matches!(
        decide(&ask, &policies, &facts),
        Verdict::Permitted { .. }
    ));

    // Accounts listed in a ConfigMap are checked once resolved.
    let listed =
        bulk(json!({"targets": {"accountsFrom": [{"configMapRef": {"name": "c", "key": "k"}}]}}));
    let facts = Facts {
        targets: Some(Targets {
            count: 2,
            listed: [A.to_string(), FOREIGN.to_string()].into(),
        }),
        ..within(&[(FOREIGN, OU, false)])
    };
    assert!(
        refused(&decide(&listed, &policies, &facts))
            .contains("spec.targets.accountsFrom account 999999999999 is not permitted")
    );
    // An excluded account asks for nothing.
    let excluded = bulk(json!({"targets": {"accounts": [A, FOREIGN], "exclude": [FOREIGN]}}));
    let unlimited = policy(
        "plain",
        json!({"namespaces": [NS], "accounts": {"ids": [A]}, "bulkRegistrations": {}}),
    );
    assert!(matches!(
        decide(&excluded, &[unlimited], &Facts::default()),
        Verdict::Permitted { .. }
    ));
}

#[test]
fn one_policy_must_permit_everything_policies_do_not_add_up() {
    let trust = policy(
        "trust",
        json!({"namespaces": [NS], "accounts": {"ids": ["*"]},
               "bulkRegistrations": {"trustedPrincipals": [FOREIGN]}}),
    );
    let admin = policy(
        "admin",
        json!({"namespaces": [NS], "accounts": {"ids": ["*"]},
               "bulkRegistrations": {"managedPolicyArns": ["*"]}}),
    );
    let both = bulk(json!({
        "template": {"builtin": {"trustedAccountId": FOREIGN, "managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}},
        "targets": {"accounts": [A]},
    }));
    let message = refused(&decide(
        &both,
        &[trust.clone(), admin.clone()],
        &Facts::default(),
    ))
    .to_string();
    assert_eq!(
        message,
        "spec.template.builtin.trustedAccountId=999999999999 is not permitted: LinkPolicy admin allows trustedPrincipals []; \
         spec.template.builtin.managedPolicyArns=arn:aws:iam::aws:policy/AdministratorAccess is not permitted: LinkPolicy trust allows managedPolicyArns []"
    );
    // Either alone is permitted by the policy that grants it.
    let trust_only = bulk(
        json!({"template": {"builtin": {"trustedAccountId": FOREIGN}}, "targets": {"accounts": [A]}}),
    );
    assert_eq!(
        decide(&trust_only, &[trust, admin], &Facts::default()),
        Verdict::Permitted {
            policy: "trust".into()
        }
    );
}

#[test]
fn a_policy_without_rights_for_a_kind_refuses_it() {
    let links_only = policy(
        "links",
        json!({"namespaces": [NS], "accounts": {"ids": ["*"]}}),
    );
    let b = decide(
        &bulk(json!({"targets": {"accounts": [A]}})),
        std::slice::from_ref(&links_only),
        &Facts::default(),
    );
    assert_eq!(
        refused(&b),
        "a BulkRegistration is not permitted: LinkPolicy links has no bulkRegistrations rights"
    );
    let m = decide(&member(json!({})), &[links_only], &Facts::default());
    assert_eq!(
        refused(&m),
        "a MemberAccount is not permitted: LinkPolicy links has no memberAccounts rights"
    );
}

#[test]
fn messages_are_bounded() {
    let many: Vec<LinkPolicy> = (0..30)
        .map(|i| {
            policy(
                &format!("policy-{i:02}-{}", "x".repeat(200)),
                json!({"namespaceSelector": {}, "accounts": {"ids": [A]},
                       "roleNames": (0..50).map(|j| format!("role-{j}-{}", "y".repeat(40))).collect::<Vec<_>>()}),
            )
        })
        .collect();
    let verdict = decide(
        &link(json!({"accountId": A, "roleName": "Admin"})),
        &many,
        &Facts::default(),
    );
    let message = refused(&verdict);
    assert!(message.chars().count() <= MAX_MESSAGE, "{}", message.len());
    assert!(message.starts_with("spec.roleName=Admin is not permitted: LinkPolicy policy-00-"));
    assert!(message.ends_with('…'));
}

/// Importing takes over stacks someone else created: only names a policy lists, by glob.
#[test]
fn import_needs_a_matching_stack_name() {
    let policies = [policy(
        "importer",
        json!({"namespaces": [NS], "accounts": {"ids": [A]},
               "bulkRegistrations": {"importStackNames": ["linker-*"]}}),
    )];
    let ask = |name: &str| {
        bulk(json!({"stackSet": {"permissionModel": "SelfManaged"},
                    "import": {"stackName": name}, "targets": {"accounts": [A]}}))
    };
    let permitted = decide(&ask("linker-role"), &policies, &Facts::default());
    assert!(
        matches!(permitted, Verdict::Permitted { .. }),
        "{permitted:?}"
    );
    let message = refused(&decide(
        &ask("payments-admin"),
        &policies,
        &Facts::default(),
    ))
    .to_string();
    assert!(
        message.contains("spec.import.stackName=payments-admin is not permitted: LinkPolicy importer allows importStackNames [linker-*]"),
        "{message}"
    );
}

/// The management account is never covered by `*`, an OU or the root: only the explicit right.
#[test]
fn the_management_account_needs_the_explicit_right() {
    let ask = bulk(
        json!({"targets": {"organizationalUnitIds": [ROOT], "includeManagementAccount": true}}),
    );
    let everything = |right: bool| {
        policy(
            "all",
            json!({"namespaces": [NS], "accounts": {"ids": ["*"], "organizationalUnitIds": [ROOT]},
                   "bulkRegistrations": {"managementAccount": right}}),
        )
    };
    let message = refused(&decide(&ask, &[everything(false)], &Facts::default())).to_string();
    assert!(
        message.contains("does not allow managementAccount"),
        "{message}"
    );
    let permitted = decide(&ask, &[everything(true)], &Facts::default());
    assert!(
        matches!(permitted, Verdict::Permitted { .. }),
        "{permitted:?}"
    );
}

mod member;

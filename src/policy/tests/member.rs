//! MemberAccount rights: parents, e-mail domains, roles, Close, counts, adoption and Park.

use serde_json::json;

use super::*;

#[test]
fn member_accounts_need_a_permitted_parent_domain_role_and_close() {
    let policies = [team_a()];
    let none = Facts::default();
    let table = [
        (
            json!({"parentId": ROOT}),
            "spec.parentId=r-ab12 is not permitted: LinkPolicy team-a allows parentIds [ou-ab12-11111111]",
        ),
        (
            json!({"email": "x@attacker.net"}),
            "spec.email domain attacker.net is not permitted: LinkPolicy team-a allows emailDomains [example.com]",
        ),
        (
            json!({"email": "x@sub.example.com"}),
            "spec.email domain sub.example.com is not permitted",
        ),
        (
            json!({"deletionPolicy": "Close"}),
            "spec.deletionPolicy=Close is not permitted: LinkPolicy team-a does not allow Close (allowClose is false)",
        ),
        (
            json!({"roleName": "Admin"}),
            "spec.roleName=Admin is not permitted",
        ),
    ];
    for (spec, text) in table {
        let verdict = decide(&member(spec.clone()), &policies, &none);
        assert!(refused(&verdict).contains(text), "{spec}: {verdict:?}");
    }
    // The policy's OU itself: only the rank is missing; upper case e-mail domains match.
    let ask = member(json!({"email": "X@EXAMPLE.COM"}));
    assert_eq!(
        decide(&ask, &policies, &none),
        Verdict::Needs(Needs {
            rank: true,
            ..Needs::default()
        })
    );
    let ranked = |rank| Facts {
        rank: Some(rank),
        ..Facts::default()
    };
    assert!(matches!(
        decide(&ask, &policies, &ranked(1)),
        Verdict::Permitted { .. }
    ));
    assert!(
        refused(&decide(&ask, &policies, &ranked(2)))
            .contains("MemberAccount number 3 of the namespace (oldest first) is not permitted: LinkPolicy team-a allows maxAccounts 2")
    );
    // A nested parent is looked up.
    let nested = member(json!({"parentId": NESTED}));
    let Verdict::Needs(needs) = decide(&nested, &policies, &ranked(0)) else {
        panic!()
    };
    assert!(needs.within.contains(&(NESTED.to_string(), OU.to_string())));
    // maxAccounts 0 refuses without ranking.
    let zero = policy(
        "zero",
        json!({"namespaces": [NS], "roleNames": ["*"],
               "memberAccounts": {"parentIds": [ROOT], "emailDomains": ["example.com"], "maxAccounts": 0}}),
    );
    assert!(refused(&decide(&ask, &[zero], &none)).contains("allows maxAccounts 0"));
}

/// Adoption needs the explicit right and the account in `accounts`; a policy without the right
/// refuses on the spec alone (no read). `parkParentId` is bounded by `parentIds`.
#[test]
fn adoption_needs_the_right_and_the_account_in_scope_and_park_a_permitted_parent() {
    let rights = |adoption: bool| {
        policy(
            "team-a",
            json!({"namespaces": [NS], "accounts": {"ids": [A], "organizationalUnitIds": [OU]},
                   "roleNames": ["OrganizationAccountAccessRole"],
                   "memberAccounts": {"parentIds": [OU], "emailDomains": ["example.com"],
                                      "adoption": adoption}}),
        )
    };
    let none = Facts::default();
    let adopt = |id: &str| {
        let mut full = json!({"accountId": id, "parentId": OU,
                              "roleName": "OrganizationAccountAccessRole"});
        let member = MemberAccount::new("m", serde_json::from_value(full.take()).unwrap());
        Ask::Member(MemberAsk::of(&member))
    };
    // No right: refused without any read, whatever the account.
    for id in [A, FOREIGN] {
        assert_eq!(
            refused(&decide(&adopt(id), &[rights(false)], &none)),
            format!(
                "spec.accountId={id} (adoption) is not permitted: LinkPolicy team-a does not allow adoption (memberAccounts.adoption is false)"
            )
        );
    }
    // The right and the account listed: permitted without an e-mail.
    assert!(matches!(
        decide(&adopt(A), &[rights(true)], &none),
        Verdict::Permitted { .. }
    ));
    // The right, an account outside the listed ids: whether it is under the OU is read.
    let Verdict::Needs(needs) = decide(&adopt(FOREIGN), &[rights(true)], &none) else {
        panic!()
    };
    assert!(
        needs
            .within
            .contains(&(FOREIGN.to_string(), OU.to_string()))
    );
    let outside = within(&[(FOREIGN, OU, false)]);
    assert!(
        refused(&decide(&adopt(FOREIGN), &[rights(true)], &outside))
            .contains("spec.accountId=999999999999 is not permitted: LinkPolicy team-a allows accounts ids [111111111111]")
    );
    // Park: the park parent is bounded by parentIds, for created accounts too.
    let park = |parent: &str| member(json!({"deletionPolicy": "Park", "parkParentId": parent}));
    assert!(matches!(
        decide(&park(OU), &[rights(false)], &none),
        Verdict::Permitted { .. }
    ));
    assert!(
        refused(&decide(&park(ROOT), &[rights(false)], &none))
            .contains("spec.parkParentId=r-ab12 is not permitted: LinkPolicy team-a allows parentIds [ou-ab12-11111111]")
    );
}

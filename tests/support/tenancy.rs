//! LinkPolicies of the tests. The operator enforces tenancy (its default), so every test's
//! namespace gets a policy that permits everything the tests ask for ([`permissive`]), unless
//! the test is about tenancy itself ([`super::Context::without_policy`]).

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use account_linker::api::LinkPolicy;

/// Every letter: a `stackSetNamePrefixes` that admits any StackSet name (they start with one).
fn every_letter() -> Vec<String> {
    ('a'..='z').chain('A'..='Z').map(String::from).collect()
}

/// A policy spec selecting `namespace` that permits every account, role, template, trust,
/// managed policy and StackSet name, adoption, and MemberAccounts anywhere under `root` with
/// the tests' e-mail domain, Close and adoption included.
pub fn permissive(namespace: &str, root: &str) -> Value {
    json!({
        "namespaces": [namespace],
        "accounts": {"ids": ["*"]},
        "roleNames": ["*"],
        "bulkRegistrations": {
            "templateSources": ["Builtin", "ConfigMap", "Url"],
            "trustedPrincipals": ["*"],
            "managedPolicyArns": ["*"],
            "stackSetNamePrefixes": every_letter(),
            "stackSetAdoption": true,
        },
        "memberAccounts": {
            "parentIds": [root],
            "emailDomains": ["example.com"],
            "allowClose": true,
            "adoption": true,
        },
    })
}

/// Creates or replaces the LinkPolicy `name` with `spec` (server-side apply).
pub async fn apply_policy(client: &Client, name: &str, spec: Value) {
    let policy = json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "LinkPolicy",
        "metadata": {"name": name}, "spec": spec,
    });
    Api::<LinkPolicy>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("account-linker-tests").force(),
            &Patch::Apply(&policy),
        )
        .await
        .unwrap_or_else(|e| panic!("apply LinkPolicy {name}: {e}"));
}

/// Deletes the LinkPolicy `name` if it exists.
pub async fn delete_policy(client: &Client, name: &str) {
    let _ = Api::<LinkPolicy>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

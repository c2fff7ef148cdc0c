//! `account-linker import-csv`: turns a file of account IDs (CSV export, comma-separated or one
//! per line; see [`crate::account_list`]) into a BulkRegistration plus the ConfigMap it reads the
//! accounts from, so large lists live in a ConfigMap rather than in the spec.

use std::collections::BTreeSet;

use serde_json::json;

use crate::account_list::{self, LineError};
use k8s_openapi::api::core::v1::ConfigMap;

use crate::api::BulkRegistration;
use crate::api::bulk_registration::{BulkDeletionPolicy, CallAs, PermissionModel};
use crate::api::labels::{WATCH_LABEL, WATCH_LABEL_VALUE};

/// ConfigMap key holding the normalised account IDs, one per line.
pub const ACCOUNTS_KEY: &str = "accounts.csv";

/// What the generated manifests look like, besides the accounts.
#[derive(Clone, Debug)]
pub struct Options {
    /// Name of the BulkRegistration; the ConfigMap is `<name>-accounts`.
    pub name: String,
    pub namespace: Option<String>,
    pub regions: Vec<String>,
    pub permission_model: PermissionModel,
    pub call_as: CallAs,
    pub administration_role_arn: Option<String>,
    pub execution_role_name: Option<String>,
    pub deletion_policy: BulkDeletionPolicy,
}

/// The manifests and what was merged on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    /// ConfigMap and BulkRegistration as a two-document YAML stream.
    pub yaml: String,
    /// Distinct account IDs, in first-seen order.
    pub accounts: Vec<String>,
    /// Lines whose account already appeared earlier (kept once).
    pub duplicates: Vec<(usize, String)>,
}

/// Parses `text` and renders the manifests; every malformed line is returned as an error.
pub fn import(text: &str, options: &Options) -> Result<Imported, Vec<LineError>> {
    let entries = account_list::parse(text)?;
    if entries.is_empty() {
        return Err(vec![LineError {
            line: 0,
            reason: "the file holds no account IDs".into(),
        }]);
    }
    let mut seen = BTreeSet::new();
    let mut accounts = Vec::new();
    let mut duplicates = Vec::new();
    for entry in entries {
        if seen.insert(entry.account.clone()) {
            accounts.push(entry.account);
        } else {
            duplicates.push((entry.line, entry.account));
        }
    }

    let config_map_name = format!("{}-accounts", options.name);
    // Labelled so that an edit of the list reaches the registration at once.
    let mut metadata = json!({
        "name": config_map_name,
        "labels": { WATCH_LABEL: WATCH_LABEL_VALUE },
    });
    let mut bulk_metadata = json!({ "name": options.name });
    if let Some(ns) = &options.namespace {
        metadata["namespace"] = json!(ns);
        bulk_metadata["namespace"] = json!(ns);
    }
    let mut body = accounts.join("\n");
    body.push('\n');
    let config_map: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
        "data": { ACCOUNTS_KEY: body },
    }))
    .expect("a ConfigMap built from valid parts");

    let mut stack_set =
        json!({ "permissionModel": options.permission_model, "callAs": options.call_as });
    if let Some(arn) = &options.administration_role_arn {
        stack_set["administrationRoleArn"] = json!(arn);
    }
    if let Some(role) = &options.execution_role_name {
        stack_set["executionRoleName"] = json!(role);
    }
    let mut spec = json!({
        "stackSet": stack_set,
        "template": { "builtin": {} },
        "targets": { "accountsFrom": [ { "configMapRef": { "name": config_map_name, "key": ACCOUNTS_KEY } } ] },
        "deletionPolicy": options.deletion_policy,
    });
    if !options.regions.is_empty() {
        spec["regions"] = json!(options.regions);
    }
    // Going through the typed object fills the defaults the API server would, and fails here
    // rather than at apply time if the shape is wrong.
    let bulk: BulkRegistration = serde_json::from_value(json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "BulkRegistration",
        "metadata": bulk_metadata, "spec": spec,
    }))
    .expect("a BulkRegistration built from valid parts");

    let yaml = format!(
        "{}---\n{}",
        crate::yaml::to_string(&config_map).expect("ConfigMap renders as YAML"),
        crate::yaml::to_string(&bulk).expect("BulkRegistration renders as YAML"),
    );
    Ok(Imported {
        yaml,
        accounts,
        duplicates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            name: "fleet".into(),
            namespace: Some("accounts".into()),
            regions: vec!["eu-west-1".into()],
            permission_model: PermissionModel::ServiceManaged,
            call_as: CallAs::DelegatedAdmin,
            administration_role_arn: None,
            execution_role_name: None,
            deletion_policy: BulkDeletionPolicy::Retain,
        }
    }

    #[test]
    fn csv_export_becomes_a_config_map_and_a_bulk_registration() {
        let text = "Account ID,Name\n111122223333,prod\n\"444455556666\",dev\n111122223333,again\n";
        let out = import(text, &options()).unwrap();
        assert_eq!(out.accounts, ["111122223333", "444455556666"]);
        assert_eq!(out.duplicates, [(4, "111122223333".to_string())]);
        let docs: Vec<serde_json::Value> = out
            .yaml
            .split("---\n")
            .map(|d| serde_saphyr::from_str(d).unwrap())
            .collect();
        assert_eq!(docs[0]["kind"], "ConfigMap");
        assert_eq!(docs[0]["metadata"]["name"], "fleet-accounts");
        assert_eq!(docs[0]["metadata"]["labels"][WATCH_LABEL], "true");
        assert_eq!(
            docs[0]["data"][ACCOUNTS_KEY],
            "111122223333\n444455556666\n"
        );
        assert_eq!(docs[1]["kind"], "BulkRegistration");
        assert_eq!(docs[1]["metadata"]["namespace"], "accounts");
        let spec = &docs[1]["spec"];
        assert_eq!(spec["stackSet"]["callAs"], "DelegatedAdmin");
        assert_eq!(spec["deletionPolicy"], "Retain");
        assert_eq!(spec["regions"][0], "eu-west-1");
        assert_eq!(
            spec["targets"]["accountsFrom"][0]["configMapRef"]["name"],
            "fleet-accounts"
        );
        assert_eq!(
            spec["targets"]["accountsFrom"][0]["configMapRef"]["key"],
            ACCOUNTS_KEY
        );
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = "111122223333\n12345\n444455556666,abc\nnot-an-id\n";
        let errors = import(text, &options()).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 4], "{errors:?}");
        assert!(errors[0].to_string().starts_with("line 2: "));
    }

    #[test]
    fn an_empty_file_is_an_error() {
        assert!(import("# only a comment\n\n", &options()).is_err());
    }

    #[test]
    fn comma_separated_lists_and_self_managed_settings() {
        let mut opts = options();
        opts.permission_model = PermissionModel::SelfManaged;
        opts.administration_role_arn = Some(
            "arn:aws:iam::123456789012:role/AWSCloudFormationStackSetAdministrationRole".into(),
        );
        opts.execution_role_name = Some("AWSCloudFormationStackSetExecutionRole".into());
        opts.namespace = None;
        let out = import("111122223333, 444455556666,777788889999\n", &opts).unwrap();
        assert_eq!(out.accounts.len(), 3);
        assert!(out.yaml.contains("permissionModel: SelfManaged"));
        assert!(
            out.yaml
                .contains("executionRoleName: AWSCloudFormationStackSetExecutionRole")
        );
        assert!(!out.yaml.contains("namespace:"));
    }
}

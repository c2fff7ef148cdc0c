//! The built-in least-privilege role template, and the fingerprint of what a StackSet was last
//! given. The template is versioned: a new version or new settings are a StackSet update
//! (CloudFormation updates every stack in place), never a new StackSet.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::bulk_registration::BuiltinTemplate;

/// Version of the built-in template; bump it whenever [`builtin`] renders differently.
pub const BUILTIN_VERSION: u32 = 1;

/// The parameter every template receives the registration token in.
pub const EXTERNAL_ID_PARAMETER: &str = "ExternalId";

/// Logical ID of the role in the built-in template.
const ROLE_RESOURCE: &str = "HubAccessRole";

/// Renders the built-in template: one named IAM role that trusts `trusted_account` under an
/// `sts:ExternalId` condition, with the managed policies asked for, an explicit deny policy and
/// the maximum session duration. Each of `extra_parameters` (the registration's `parameters`)
/// is declared and tags the role, so they are visible in every account.
pub fn builtin(
    settings: &BuiltinTemplate,
    trusted_account: &str,
    partition: &str,
    extra_parameters: &[&str],
) -> String {
    let mut properties = json!({
        "RoleName": settings.role_name,
        "Description": format!("Hub access for account-linker (template v{BUILTIN_VERSION})"),
        "MaxSessionDuration": settings.max_session_duration,
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:{partition}:iam::{trusted_account}:root")},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": {"Ref": EXTERNAL_ID_PARAMETER}}}
            }]
        },
    });
    if !settings.managed_policy_arns.is_empty() {
        properties["ManagedPolicyArns"] = json!(settings.managed_policy_arns);
    }
    if !settings.deny_actions.is_empty() {
        properties["Policies"] = json!([{
            "PolicyName": "account-linker-explicit-deny",
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Deny", "Action": settings.deny_actions, "Resource": "*"}]
            }
        }]);
    }
    let mut parameters = json!({
        EXTERNAL_ID_PARAMETER: {
            "Type": "String",
            "NoEcho": true,
            "MinLength": 2,
            "MaxLength": 1224,
            "Description": "Registration token the hub presents as sts:ExternalId"
        }
    });
    if !extra_parameters.is_empty() {
        let mut tags = Vec::new();
        for name in extra_parameters {
            parameters[*name] = json!({"Type": "String"});
            tags.push(json!({"Key": name, "Value": {"Ref": name}}));
        }
        properties["Tags"] = json!(tags);
    }
    let template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("account-linker hub access role, template v{BUILTIN_VERSION}"),
        "Parameters": parameters,
        "Resources": {ROLE_RESOURCE: {"Type": "AWS::IAM::Role", "Properties": properties}},
        "Outputs": {"RoleArn": {"Value": {"Fn::GetAtt": [ROLE_RESOURCE, "Arn"]}}}
    });
    serde_json::to_string_pretty(&template).unwrap_or_else(|_| Value::Null.to_string())
}

/// A fingerprint of everything a StackSet update would change: template source, parameters
/// (including the token, which is never stored, only hashed with the rest) and settings.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex(&hasher.finalize())[..16].to_string()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BuiltinTemplate {
        serde_json::from_value(json!({})).unwrap()
    }

    #[test]
    fn the_role_trusts_the_hub_under_the_external_id() {
        let body: Value =
            serde_json::from_str(&builtin(&settings(), "111122223333", "aws", &[])).unwrap();
        let role = &body["Resources"]["HubAccessRole"]["Properties"];
        assert_eq!(role["RoleName"], "AccountLinkerAccess");
        assert_eq!(role["MaxSessionDuration"], 3600);
        let statement = &role["AssumeRolePolicyDocument"]["Statement"][0];
        assert_eq!(
            statement["Principal"]["AWS"],
            "arn:aws:iam::111122223333:root"
        );
        assert_eq!(
            statement["Condition"]["StringEquals"]["sts:ExternalId"]["Ref"],
            "ExternalId"
        );
        assert_eq!(body["Parameters"]["ExternalId"]["NoEcho"], true);
        assert!(role.get("ManagedPolicyArns").is_none());
        assert!(role.get("Policies").is_none());
    }

    #[test]
    fn policies_and_denies_are_rendered_when_asked_for() {
        let mut s = settings();
        s.managed_policy_arns = vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()];
        s.deny_actions = vec!["iam:CreateUser".into(), "organizations:*".into()];
        s.max_session_duration = 7200;
        let body: Value =
            serde_json::from_str(&builtin(&s, "111122223333", "aws-cn", &["Owner"])).unwrap();
        let role = &body["Resources"]["HubAccessRole"]["Properties"];
        assert_eq!(
            role["ManagedPolicyArns"][0],
            "arn:aws:iam::aws:policy/ReadOnlyAccess"
        );
        let deny = &role["Policies"][0]["PolicyDocument"]["Statement"][0];
        assert_eq!(deny["Effect"], "Deny");
        assert_eq!(deny["Action"][1], "organizations:*");
        assert_eq!(role["MaxSessionDuration"], 7200);
        assert_eq!(body["Parameters"]["Owner"]["Type"], "String");
        assert_eq!(role["Tags"][0]["Value"]["Ref"], "Owner");
        assert!(
            role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"]
                .as_str()
                .unwrap()
                .starts_with("arn:aws-cn:")
        );
    }

    #[test]
    fn fingerprints_are_stable_and_unambiguous() {
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
        assert_ne!(fingerprint(&["ab", ""]), fingerprint(&["a", "b"]));
        assert_eq!(fingerprint(&["x"]).len(), 16);
    }
}

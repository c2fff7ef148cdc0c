//! The built-in least-privilege role template, the checks every custom template passes, and
//! the fingerprint of what a StackSet was last given. The template is versioned: a new version
//! or new settings are a StackSet update (CloudFormation updates every stack in place), never a
//! new StackSet.

use std::collections::VecDeque;
use std::sync::Mutex;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::bulk_registration::BuiltinTemplate;
use crate::aws::TemplateParameter;
use crate::aws::stacksets::TemplateBody;
use crate::controller::hash_key::HashKey;

/// Version of the built-in template; bump it whenever [`builtin`] renders differently.
/// 2: the role trusts the operator's own role instead of the hub account's root, and takes a
/// permissions boundary. 3: the role also trusts `PreviousExternalId`, so a rotation overlaps.
pub const BUILTIN_VERSION: u32 = 3;

/// The parameter every template receives the registration token in.
pub const EXTERNAL_ID_PARAMETER: &str = "ExternalId";
/// The built-in template's second trusted token: the one a rotation replaces while the fleet
/// moves to the new one, else the current token again.
pub const PREVIOUS_EXTERNAL_ID_PARAMETER: &str = "PreviousExternalId";

/// Logical ID of the role in the built-in template.
const ROLE_RESOURCE: &str = "HubAccessRole";

/// The principal the built-in role trusts: the root of `trusted_account_id` when the spec names
/// one (a LinkPolicy decides whether it may), else `hub` — the operator's own role.
pub fn trusted_principal(settings: &BuiltinTemplate, partition: &str, hub: &str) -> String {
    match &settings.trusted_account_id {
        Some(account) => format!("arn:{partition}:iam::{account}:root"),
        None => hub.to_string(),
    }
}

/// The principal a role trust policy names for the caller GetCallerIdentity describes: an
/// assumed-role session (`arn:<partition>:sts::<account>:assumed-role/<role>/<session>`) is its
/// role, `arn:<partition>:iam::<account>:role/<role>`; any other caller (an IAM user, a
/// federated user) is named by its own ARN. GetCallerIdentity does not say a role's path, so a
/// role with a path must be given with `--hub-role-arn`. `None` for what is not an ARN.
pub fn hub_principal(caller_arn: &str) -> Option<String> {
    let mut parts = caller_arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(_), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if partition.is_empty() || account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match (service, resource.split('/').collect::<Vec<_>>().as_slice()) {
        ("sts", ["assumed-role", role, _session]) if !role.is_empty() => {
            Some(format!("arn:{partition}:iam::{account}:role/{role}"))
        }
        ("sts", ["assumed-role", ..]) => None,
        ("iam" | "sts", _) if !resource.is_empty() => Some(caller_arn.to_string()),
        _ => None,
    }
}

/// Renders the built-in template: one named IAM role that trusts `principal` under an
/// `sts:ExternalId` condition, with the managed policies asked for, an explicit deny policy, the
/// permissions boundary and the maximum session duration. Each of `extra_parameters` (the
/// registration's `parameters`) is declared and tags the role, so they are visible in every
/// account.
pub fn builtin(settings: &BuiltinTemplate, principal: &str, extra_parameters: &[&str]) -> String {
    let mut properties = json!({
        "RoleName": settings.role_name,
        "Description": format!("Hub access for account-linker (template v{BUILTIN_VERSION})"),
        "MaxSessionDuration": settings.max_session_duration,
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": principal},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": [
                    {"Ref": EXTERNAL_ID_PARAMETER},
                    {"Ref": PREVIOUS_EXTERNAL_ID_PARAMETER}
                ]}}
            }]
        },
    });
    if !settings.managed_policy_arns.is_empty() {
        properties["ManagedPolicyArns"] = json!(settings.managed_policy_arns);
    }
    if let Some(boundary) = &settings.permissions_boundary_arn {
        properties["PermissionsBoundary"] = json!(boundary);
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
        },
        PREVIOUS_EXTERNAL_ID_PARAMETER: {
            "Type": "String",
            "NoEcho": true,
            "MinLength": 2,
            "MaxLength": 1224,
            "Description": "The token a rotation replaces, trusted until every link uses the new one (else ExternalId again)"
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

/// Whether a custom template keeps the registration token out of sight: it must declare the
/// `ExternalId` parameter with `NoEcho: true`, or CloudFormation shows the value in
/// DescribeStackSet, stack parameters and the console to everyone who may read them. The error
/// says what to change.
pub fn external_id_hidden(parameters: &[TemplateParameter]) -> Result<(), String> {
    match parameters.iter().find(|p| p.name == EXTERNAL_ID_PARAMETER) {
        Some(p) if p.no_echo => Ok(()),
        Some(_) => Err(format!(
            "the template declares the {EXTERNAL_ID_PARAMETER} parameter without NoEcho: true, so CloudFormation would show the registration token to anyone who can describe the StackSet; declare it as `{EXTERNAL_ID_PARAMETER}: {{Type: String, NoEcho: true}}`"
        )),
        None => Err(format!(
            "the template declares no {EXTERNAL_ID_PARAMETER} parameter; the registration token is passed in it, so declare `{EXTERNAL_ID_PARAMETER}: {{Type: String, NoEcho: true}}` and use it in the role's sts:ExternalId condition"
        )),
    }
}

/// The S3 object version a template URL names (its `versionId` query parameter). Without one,
/// a new upload under the same URL would change what the StackSet deploys without changing the
/// fingerprint, so it would never reach the StackSet (and a replaced object would reach new
/// accounts unreviewed).
pub fn url_version(url: &str) -> Option<&str> {
    let (_, query) = url.split_once('?')?;
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("versionId="))
        .filter(|v| !v.is_empty())
}

/// Custom templates found to hide the token, so that the passes that poll an operation do not
/// ask CloudFormation about the same template again. Bounded: the oldest is forgotten first
/// (and asked about again if it comes back).
#[derive(Debug, Default)]
pub struct Vetted(Mutex<VecDeque<String>>);

/// Templates [`Vetted`] remembers.
const VETTED_KEPT: usize = 256;

impl Vetted {
    fn digest(template: &TemplateBody) -> String {
        match template {
            TemplateBody::Body(body) => fingerprint(&["body", body]),
            TemplateBody::Url(url) => fingerprint(&["url", url]),
        }
    }

    /// Whether `template` was found to hide the token.
    pub fn contains(&self, template: &TemplateBody) -> bool {
        let digest = Self::digest(template);
        self.0
            .lock()
            .map(|kept| kept.contains(&digest))
            .unwrap_or(false)
    }

    /// Remembers that `template` hides the token.
    pub fn insert(&self, template: &TemplateBody) {
        let digest = Self::digest(template);
        if let Ok(mut kept) = self.0.lock()
            && !kept.contains(&digest)
        {
            if kept.len() == VETTED_KEPT {
                kept.pop_front();
            }
            kept.push_back(digest);
        }
    }
}

/// A plain fingerprint, for names and IDs derived from public values.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex(&hasher.finalize())[..16].to_string()
}

/// A fingerprint keyed with the cluster's [`HashKey`] (HMAC-SHA256), for anything that covers a
/// secret: without the key, a reader of the fingerprint cannot test guesses of the secret.
pub fn keyed_fingerprint(key: &HashKey, parts: &[&str]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    hex(&mac.finalize().into_bytes())[..16].to_string()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB_ROLE: &str = "arn:aws:iam::111122223333:role/account-linker";

    fn settings() -> BuiltinTemplate {
        serde_json::from_value(json!({})).unwrap()
    }

    fn role(body: &str) -> Value {
        let body: Value = serde_json::from_str(body).unwrap();
        body["Resources"]["HubAccessRole"]["Properties"].clone()
    }

    #[test]
    fn the_role_trusts_the_operators_role_under_the_external_id() {
        let s = settings();
        let principal = trusted_principal(&s, "aws", HUB_ROLE);
        let body = builtin(&s, &principal, &[]);
        let role = role(&body);
        assert_eq!(role["RoleName"], "AccountLinkerAccess");
        assert_eq!(role["MaxSessionDuration"], 3600);
        let statement = &role["AssumeRolePolicyDocument"]["Statement"][0];
        assert_eq!(statement["Principal"]["AWS"], HUB_ROLE);
        assert_eq!(
            statement["Condition"]["StringEquals"]["sts:ExternalId"],
            json!([{"Ref": "ExternalId"}, {"Ref": "PreviousExternalId"}])
        );
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["Parameters"]["ExternalId"]["NoEcho"], true);
        assert_eq!(parsed["Parameters"]["PreviousExternalId"]["NoEcho"], true);
        assert!(role.get("ManagedPolicyArns").is_none());
        assert!(role.get("Policies").is_none());
        assert!(role.get("PermissionsBoundary").is_none());
        assert!(body.contains("template v3"));
    }

    #[test]
    fn a_trusted_account_replaces_the_operators_role_with_that_accounts_root() {
        let mut s = settings();
        s.trusted_account_id = Some("444455556666".into());
        let cases = [
            ("aws", "arn:aws:iam::444455556666:root"),
            ("aws-cn", "arn:aws-cn:iam::444455556666:root"),
        ];
        for (partition, want) in cases {
            let role = role(&builtin(
                &s,
                &trusted_principal(&s, partition, HUB_ROLE),
                &[],
            ));
            let principal = &role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"];
            assert_eq!(principal, want, "{partition}");
        }
    }

    #[test]
    fn policies_denies_and_the_boundary_are_rendered_when_asked_for() {
        let mut s = settings();
        s.managed_policy_arns = vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()];
        s.deny_actions = vec!["iam:CreateUser".into(), "organizations:*".into()];
        s.max_session_duration = 7200;
        s.permissions_boundary_arn = Some("arn:aws:iam::111122223333:policy/Boundary".into());
        let body = builtin(&s, HUB_ROLE, &["Owner"]);
        let role = role(&body);
        assert_eq!(
            role["ManagedPolicyArns"][0],
            "arn:aws:iam::aws:policy/ReadOnlyAccess"
        );
        let deny = &role["Policies"][0]["PolicyDocument"]["Statement"][0];
        assert_eq!(deny["Effect"], "Deny");
        assert_eq!(deny["Action"][1], "organizations:*");
        assert_eq!(role["MaxSessionDuration"], 7200);
        assert_eq!(
            role["PermissionsBoundary"],
            "arn:aws:iam::111122223333:policy/Boundary"
        );
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["Parameters"]["Owner"]["Type"], "String");
        assert_eq!(role["Tags"][0]["Value"]["Ref"], "Owner");
    }

    #[test]
    fn callers_map_to_the_principal_a_trust_policy_names() {
        let cases = [
            (
                "arn:aws:sts::111122223333:assumed-role/account-linker/pod-7f9",
                Some("arn:aws:iam::111122223333:role/account-linker"),
            ),
            (
                "arn:aws-us-gov:sts::111122223333:assumed-role/op/i-0abc",
                Some("arn:aws-us-gov:iam::111122223333:role/op"),
            ),
            // Session names may hold characters a role name may not; only the role counts.
            (
                "arn:aws:sts::111122223333:assumed-role/op/a@b.c",
                Some("arn:aws:iam::111122223333:role/op"),
            ),
            (
                "arn:aws:iam::111122223333:user/ci/deployer",
                Some("arn:aws:iam::111122223333:user/ci/deployer"),
            ),
            (
                "arn:aws:sts::111122223333:federated-user/alice",
                Some("arn:aws:sts::111122223333:federated-user/alice"),
            ),
            ("arn:aws:sts::111122223333:assumed-role/op", None),
            ("arn:aws:sts::111122223333:assumed-role//s", None),
            ("arn:aws:sts::1111:assumed-role/op/s", None),
            ("arn:aws:s3:::bucket", None),
            ("not-an-arn", None),
            ("", None),
        ];
        for (caller, want) in cases {
            assert_eq!(hub_principal(caller).as_deref(), want, "{caller}");
        }
    }

    #[test]
    fn only_a_no_echo_external_id_parameter_passes() {
        let p = |name: &str, no_echo| TemplateParameter {
            name: name.into(),
            no_echo,
        };
        let cases = [
            (vec![p("ExternalId", true)], None),
            (vec![p("Owner", false), p("ExternalId", true)], None),
            (vec![p("ExternalId", false)], Some("without NoEcho")),
            (vec![p("Owner", true)], Some("declares no ExternalId")),
            (vec![], Some("declares no ExternalId")),
            (vec![p("externalid", true)], Some("declares no ExternalId")),
        ];
        for (parameters, want) in cases {
            match (external_id_hidden(&parameters), want) {
                (Ok(()), None) => {}
                (Err(message), Some(fragment)) => {
                    assert!(message.contains(fragment), "{message}");
                    assert!(message.contains("NoEcho: true"), "{message}");
                }
                (got, _) => panic!("{parameters:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn template_urls_name_their_version() {
        let cases = [
            (
                "https://b.s3.amazonaws.com/t.yaml?versionId=3HL4kq",
                Some("3HL4kq"),
            ),
            (
                "https://b.s3.amazonaws.com/t.yaml?x=1&versionId=v2#frag",
                Some("v2"),
            ),
            ("https://b.s3.amazonaws.com/t.yaml", None),
            ("https://b.s3.amazonaws.com/t.yaml?versionId=", None),
            ("https://b.s3.amazonaws.com/t.yaml?myversionId=v1", None),
            ("https://b.s3.amazonaws.com/t.yaml#versionId=v1", None),
        ];
        for (url, want) in cases {
            assert_eq!(url_version(url), want, "{url}");
        }
    }

    #[test]
    fn vetted_templates_are_remembered_up_to_a_bound() {
        let vetted = Vetted::default();
        let body = |i: usize| TemplateBody::Body(format!("template {i}"));
        assert!(!vetted.contains(&body(0)));
        vetted.insert(&body(0));
        assert!(vetted.contains(&body(0)));
        // A URL is not the body it serves.
        assert!(!vetted.contains(&TemplateBody::Url("template 0".into())));
        for i in 1..=VETTED_KEPT {
            vetted.insert(&body(i));
        }
        assert!(!vetted.contains(&body(0)), "the oldest is forgotten");
        assert!(vetted.contains(&body(VETTED_KEPT)));
        assert_eq!(vetted.0.lock().unwrap().len(), VETTED_KEPT);
    }

    #[test]
    fn fingerprints_are_stable_and_unambiguous() {
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
        assert_ne!(fingerprint(&["ab", ""]), fingerprint(&["a", "b"]));
        assert_eq!(fingerprint(&["x"]).len(), 16);
    }

    #[test]
    fn keyed_fingerprints_are_stable_under_one_key_and_differ_under_another() {
        let key = HashKey::from_bytes(&[1; 32]).unwrap();
        let other = HashKey::from_bytes(&[2; 32]).unwrap();
        let parts = ["body:template", "ExternalId=short"];
        assert_eq!(
            keyed_fingerprint(&key, &parts),
            keyed_fingerprint(&key, &parts)
        );
        assert_ne!(
            keyed_fingerprint(&key, &parts),
            keyed_fingerprint(&other, &parts)
        );
        // Keyed, it is not the plain digest a reader could recompute from a guess.
        assert_ne!(keyed_fingerprint(&key, &parts), fingerprint(&parts));
        assert_ne!(
            keyed_fingerprint(&key, &["ab", ""]),
            keyed_fingerprint(&key, &["a", "b"])
        );
        assert_eq!(keyed_fingerprint(&key, &parts).len(), 16);
    }
}

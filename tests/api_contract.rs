//! The v1alpha1 API contract, proven on a real kube-apiserver: the CRDs install, the examples
//! are accepted, invalid objects are rejected with the expected message, printer columns and
//! `kubectl explain` text are served, and status is a real subresource.

mod support;

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde_json::{Value, json};

use account_linker::api::{BulkRegistration, LinkedAccount, MemberAccount};
use support::TestNamespace;

fn dynamic_api<K: Resource<DynamicType = ()>>(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<K>(&()))
}

fn api_for_kind(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    match kind {
        "LinkedAccount" => dynamic_api::<LinkedAccount>(client, ns),
        "BulkRegistration" => dynamic_api::<BulkRegistration>(client, ns),
        "MemberAccount" => dynamic_api::<MemberAccount>(client, ns),
        other => panic!("unknown kind {other}"),
    }
}

fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "accountlinker.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("valid object shape")
}

fn linked(spec: Value) -> Value {
    let mut base = json!({"accountId": "123456789012"});
    merge(&mut base, spec);
    base
}

fn bulk(spec: Value) -> Value {
    let mut base = json!({
        "stackSet": {"permissionModel": "ServiceManaged"},
        "template": {"builtin": {}},
        "targets": {"organizationalUnitIds": ["ou-ab12-cdefgh34"]},
    });
    merge(&mut base, spec);
    base
}

fn member(spec: Value) -> Value {
    let mut base = json!({
        "accountName": "sandbox-7",
        "email": "sandbox-7@example.com",
        "parentId": "ou-ab12-sandbox01",
    });
    merge(&mut base, spec);
    base
}

/// JSON merge patch semantics: `null` removes a key.
/// A map of `n` distinct keys, each holding `value`.
fn entries(n: usize, value: &str) -> Value {
    Value::Object((0..n).map(|i| (format!("k{i}"), json!(value))).collect())
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p,
    }
}

/// A write must fail with HTTP 422 and a message containing `expected`.
fn assert_invalid<T>(result: Result<T, kube::Error>, case: &str, expected: &str) {
    match result {
        Ok(_) => panic!("{case}: the API server accepted an invalid write"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{case}: unexpected status {status:?}");
            assert!(
                status.message.contains(expected),
                "{case}: message {:?} does not contain {expected:?}",
                status.message
            );
        }
        Err(other) => panic!("{case}: unexpected error {other}"),
    }
}

#[tokio::test]
async fn crds_are_established_with_names_and_categories() {
    let env = support::env();
    let text = env.kubectl_ok(&["get", "crd", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Established\")].status}{\"\\n\"}{end}"]);
    for crd in account_linker::api::crds() {
        let name = crd.metadata.name.unwrap();
        assert!(
            text.contains(&format!("{name}=True")),
            "{name} not Established: {text}"
        );
    }
    let text = env.kubectl_ok(&[
        "api-resources",
        "--categories",
        "accountlinker",
        "-o",
        "name",
    ]);
    for plural in [
        "linkedaccounts",
        "bulkregistrations",
        "memberaccounts",
        "linkpolicies",
    ] {
        assert!(
            text.contains(plural),
            "{plural} missing from category: {text}"
        );
    }
    // A namespace's author cannot grant itself rights: policies live outside namespaces.
    let cluster_scoped = env.kubectl_ok(&[
        "api-resources",
        "--api-group",
        "accountlinker.dev",
        "--namespaced=false",
        "-o",
        "name",
    ]);
    assert_eq!(
        cluster_scoped.trim(),
        "linkpolicies.accountlinker.dev",
        "{cluster_scoped}"
    );
}

/// Every manifest a user is told to apply: each file of `examples/` and each YAML block of
/// `docs/policy-recipes.md`, named by where it comes from.
fn documented_manifests() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(root.join("examples"))
        .expect("examples/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "expected example manifests, found {files:?}"
    );
    let mut manifests: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("readable example");
            (f.display().to_string(), text)
        })
        .collect();
    let recipes = "docs/policy-recipes.md";
    let text = std::fs::read_to_string(root.join(recipes)).expect("readable recipes");
    let blocks: Vec<&str> = text
        .split("```yaml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().expect("a closed block"))
        .collect();
    assert!(
        blocks.len() >= 4,
        "expected a policy per recipe in {recipes}, found {}",
        blocks.len()
    );
    manifests.extend(
        blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| (format!("{recipes}, YAML block {}", i + 1), b.to_string())),
    );
    manifests
}

#[tokio::test]
async fn every_example_and_policy_recipe_is_accepted() {
    let env = support::env();
    let client = env.client().await;
    let ns = TestNamespace::create(&client, "examples").await;
    // A server-side dry run: admission, the schemas and CEL rules, strict field validation, and
    // nothing left behind (LinkPolicies are cluster-scoped).
    for (origin, manifest) in documented_manifests() {
        let mut apply = env.kubectl();
        apply.args([
            "apply",
            "--server-side",
            "--dry-run=server",
            "--validate=strict",
            "-n",
            &ns.name,
            "-f",
            "-",
        ]);
        let out = support::run(apply, Some(&manifest));
        assert!(
            out.status.success(),
            "{origin} was rejected: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ns.cleanup().await;
}

#[tokio::test]
async fn invalid_objects_are_rejected_with_clear_messages() {
    let env = support::env();
    let client = env.client().await;
    let ns = TestNamespace::create(&client, "invalid").await;

    let arn = |acct: &str| format!("arn:aws:iam::{acct}:role/AccountLinkerAccess");
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        // LinkedAccount
        (
            "LinkedAccount",
            "short account id",
            linked(json!({"accountId": "12345"})),
            "should match '^[0-9]{12}$'",
        ),
        (
            "LinkedAccount",
            "missing account id",
            linked(json!({"accountId": null})),
            "spec.accountId: Required value",
        ),
        (
            "LinkedAccount",
            "account id as number",
            linked(json!({"accountId": 123456789012u64})),
            "must be of type string",
        ),
        (
            "LinkedAccount",
            "role name and arn",
            linked(json!({"roleName": "A", "roleArn": arn("123456789012")})),
            "set either spec.roleName or spec.roleArn, not both",
        ),
        (
            "LinkedAccount",
            "role arn in another account",
            linked(json!({"roleArn": arn("210987654321")})),
            "spec.roleArn must name a role in spec.accountId",
        ),
        (
            "LinkedAccount",
            "malformed role arn",
            linked(json!({"roleArn": "arn:aws:iam::123456789012:user/bob"})),
            "spec.roleArn in body should match",
        ),
        (
            "LinkedAccount",
            "role arn too long",
            linked(
                json!({"roleArn": format!("{}/{}/AccountLinkerAccess", "arn:aws:iam::123456789012:role", "p".repeat(2048))}),
            ),
            "may not be more than 2048 bytes",
        ),
        (
            "LinkedAccount",
            "bad role name",
            linked(json!({"roleName": "no spaces allowed"})),
            "spec.roleName in body should match",
        ),
        (
            "LinkedAccount",
            "session too short",
            linked(json!({"sessionDurationSeconds": 600})),
            "should be greater than or equal to 900",
        ),
        (
            "LinkedAccount",
            "session too long",
            linked(json!({"sessionDurationSeconds": 50000})),
            "should be less than or equal to 43200",
        ),
        (
            "LinkedAccount",
            "verify interval below 1m",
            linked(json!({"verifyInterval": "30s"})),
            "verifyInterval must be at least 1m",
        ),
        (
            "LinkedAccount",
            "verify interval not a duration",
            linked(json!({"verifyInterval": "soon"})),
            "spec.verifyInterval in body should match",
        ),
        (
            "LinkedAccount",
            "suspend not a boolean",
            linked(json!({"suspend": "yes"})),
            "must be of type boolean",
        ),
        (
            "LinkedAccount",
            "secret ref without key",
            linked(json!({"externalId": {"secretRef": {"name": "s"}}})),
            "spec.externalId.secretRef.key: Required value",
        ),
        // BulkRegistration
        (
            "BulkRegistration",
            "two template sources",
            bulk(json!({"template": {"builtin": {}, "url": "https://s3.amazonaws.com/b/t.yaml"}})),
            "set exactly one of template.builtin, template.configMapRef and template.url",
        ),
        (
            "BulkRegistration",
            "no template source",
            bulk(json!({"template": {"builtin": null}})),
            "set exactly one of template.builtin, template.configMapRef and template.url",
        ),
        (
            "BulkRegistration",
            "auto deployment on self-managed",
            bulk(
                json!({"stackSet": {"permissionModel": "SelfManaged"}, "targets": {"organizationalUnitIds": null, "accounts": ["111111111111"]}, "autoDeployment": {"enabled": true}}),
            ),
            "autoDeployment applies to ServiceManaged StackSets only",
        ),
        (
            "BulkRegistration",
            "import on service-managed",
            bulk(json!({"import": {"stackName": "linker-access-role"}})),
            "import applies to SelfManaged StackSets only",
        ),
        (
            "BulkRegistration",
            "execution role on service-managed",
            bulk(json!({"stackSet": {"executionRoleName": "Exec"}})),
            "administrationRoleArn and executionRoleName apply to SelfManaged StackSets only",
        ),
        (
            "BulkRegistration",
            "delegated admin on self-managed",
            bulk(
                json!({"stackSet": {"permissionModel": "SelfManaged", "callAs": "DelegatedAdmin"}, "targets": {"organizationalUnitIds": null, "accounts": ["111111111111"]}}),
            ),
            "a delegated administrator can only use ServiceManaged StackSets",
        ),
        (
            "BulkRegistration",
            "drift checks more often than every 10 minutes",
            bulk(json!({"drift": {"checkInterval": "5m"}})),
            "drift.checkInterval must be at least 10m",
        ),
        (
            "BulkRegistration",
            "unknown drift remediation",
            bulk(json!({"drift": {"checkInterval": "1h", "remediation": "Delete"}})),
            "Unsupported value: \"Delete\"",
        ),
        (
            "BulkRegistration",
            "unknown permission model",
            bulk(json!({"stackSet": {"permissionModel": "Organizations"}})),
            "Unsupported value: \"Organizations\"",
        ),
        (
            "BulkRegistration",
            "missing permission model",
            bulk(json!({"stackSet": {"permissionModel": null}})),
            "spec.stackSet.permissionModel: Required value",
        ),
        (
            "BulkRegistration",
            "max concurrent count and percentage",
            bulk(
                json!({"operationPreferences": {"maxConcurrentCount": 5, "maxConcurrentPercentage": 50}}),
            ),
            "set maxConcurrentCount or maxConcurrentPercentage, not both",
        ),
        (
            "BulkRegistration",
            "failure tolerance count and percentage",
            bulk(
                json!({"operationPreferences": {"failureToleranceCount": 1, "failureTolerancePercentage": 10}}),
            ),
            "set failureToleranceCount or failureTolerancePercentage, not both",
        ),
        (
            "BulkRegistration",
            "builtin role in two regions",
            bulk(json!({"regions": ["eu-west-1", "us-east-1"]})),
            "the builtin template creates a named IAM role, which is global",
        ),
        (
            "BulkRegistration",
            "defaulted builtin role in two regions",
            bulk(json!({"template": null, "regions": ["eu-west-1", "us-east-1"]})),
            "the builtin template creates a named IAM role, which is global",
        ),
        (
            "BulkRegistration",
            "malformed OU id",
            bulk(json!({"targets": {"organizationalUnitIds": ["ou-xyz"]}})),
            "should match",
        ),
        (
            "BulkRegistration",
            "OU targets on self-managed",
            bulk(json!({"stackSet": {"permissionModel": "SelfManaged"}})),
            "targets.organizationalUnitIds needs a ServiceManaged StackSet",
        ),
        (
            "BulkRegistration",
            "no targets",
            bulk(json!({"targets": {"organizationalUnitIds": null}})),
            "targets needs at least one of accounts, accountsFrom or organizationalUnitIds",
        ),
        (
            "BulkRegistration",
            "ExternalId as a parameter",
            bulk(json!({"parameters": [{"name": "ExternalId", "value": "x"}]})),
            "the ExternalId parameter is managed by the operator",
        ),
        (
            "BulkRegistration",
            "rotation below 1h",
            bulk(json!({"externalId": {"rotateEvery": "10m"}})),
            "rotateEvery must be at least 1h",
        ),
        (
            "BulkRegistration",
            "rotation of a referenced secret",
            bulk(
                json!({"externalId": {"rotateEvery": "720h", "secretRef": {"name": "t", "key": "k"}}}),
            ),
            "rotateEvery applies to generated tokens only",
        ),
        (
            "BulkRegistration",
            "bad region",
            bulk(json!({"regions": ["Europe"]})),
            "should match",
        ),
        (
            "BulkRegistration",
            "bad account in targets",
            bulk(json!({"targets": {"accounts": ["12"]}})),
            "should match '^[0-9]{12}$'",
        ),
        (
            "BulkRegistration",
            "template url without an object version",
            bulk(
                json!({"template": {"builtin": null, "url": "https://b.s3.amazonaws.com/t.yaml"}}),
            ),
            "template.url must name an S3 object version (?versionId=...)",
        ),
        (
            "BulkRegistration",
            "template url with an empty object version",
            bulk(
                json!({"template": {"builtin": null, "url": "https://b.s3.amazonaws.com/t.yaml?versionId="}}),
            ),
            "template.url must name an S3 object version (?versionId=...)",
        ),
        (
            "BulkRegistration",
            "plain http template url",
            bulk(json!({"template": {"builtin": null, "url": "http://example.com/t.yaml"}})),
            "spec.template.url in body should match",
        ),
        (
            "BulkRegistration",
            "max session duration too long",
            bulk(json!({"template": {"builtin": {"maxSessionDuration": 50000}}})),
            "should be less than or equal to 43200",
        ),
        (
            "BulkRegistration",
            "too many link labels",
            bulk(json!({"linkTemplate": {"labels": entries(65, "v")}})),
            "spec.linkTemplate.labels: Too many: 65: must have at most 64 items",
        ),
        (
            "BulkRegistration",
            "link label key too long",
            bulk(json!({"linkTemplate": {"labels": {"k".repeat(317): "v"}}})),
            "spec.linkTemplate.labels: Invalid value: keys must be at most 316 characters",
        ),
        (
            "BulkRegistration",
            "link label value too long",
            bulk(json!({"linkTemplate": {"labels": {"team": "v".repeat(64)}}})),
            "may not be more than 63 bytes",
        ),
        (
            "BulkRegistration",
            "too many link annotations",
            bulk(json!({"linkTemplate": {"annotations": entries(65, "v")}})),
            "spec.linkTemplate.annotations: Too many: 65: must have at most 64 items",
        ),
        (
            "BulkRegistration",
            "link annotation key too long",
            bulk(json!({"linkTemplate": {"annotations": {"k".repeat(317): "v"}}})),
            "spec.linkTemplate.annotations: Invalid value: keys must be at most 316 characters",
        ),
        (
            "BulkRegistration",
            "link annotation value too long",
            bulk(json!({"linkTemplate": {"annotations": {"note": "v".repeat(4097)}}})),
            "may not be more than 4096 bytes",
        ),
        (
            "BulkRegistration",
            "too many regions in order",
            bulk(json!({"operationPreferences": {"regionOrder": vec!["eu-west-1"; 51]}})),
            "must have at most 50 items",
        ),
        (
            "BulkRegistration",
            "region in order too long",
            bulk(
                json!({"operationPreferences": {"regionOrder": [format!("eu-{}-1", "a".repeat(28))]}}),
            ),
            "may not be more than 32 bytes",
        ),
        // MemberAccount
        (
            "MemberAccount",
            "malformed email",
            member(json!({"email": "not-an-email"})),
            "spec.email in body should match",
        ),
        (
            "MemberAccount",
            "malformed parent",
            member(json!({"parentId": "sandbox"})),
            "spec.parentId in body should match",
        ),
        (
            "MemberAccount",
            "account name too long",
            member(json!({"accountName": "x".repeat(51)})),
            "may not be more than 50",
        ),
        (
            "MemberAccount",
            "unknown deletion policy",
            member(json!({"deletionPolicy": "Delete"})),
            "Unsupported value: \"Delete\"",
        ),
        (
            "MemberAccount",
            "link verify interval below 1m",
            member(json!({"link": {"verifyInterval": "10s"}})),
            "verifyInterval must be at least 1m",
        ),
        (
            "MemberAccount",
            "unknown billing access",
            member(json!({"iamUserAccessToBilling": "Maybe"})),
            "Unsupported value: \"Maybe\"",
        ),
        (
            "MemberAccount",
            "missing email",
            member(json!({"email": null})),
            "email and accountName are required unless accountId names an existing account to adopt",
        ),
        (
            "MemberAccount",
            "malformed account id to adopt",
            member(json!({"accountId": "12345", "email": null, "accountName": null})),
            "spec.accountId in body should match '^[0-9]{12}$'",
        ),
        (
            "MemberAccount",
            "park without a park parent",
            member(json!({"deletionPolicy": "Park"})),
            "parkParentId is required with deletionPolicy Park, and only with it",
        ),
        (
            "MemberAccount",
            "park parent without park",
            member(json!({"parkParentId": "ou-ab12-quaran01"})),
            "parkParentId is required with deletionPolicy Park, and only with it",
        ),
        (
            "MemberAccount",
            "malformed park parent",
            member(json!({"deletionPolicy": "Park", "parkParentId": "quarantine"})),
            "spec.parkParentId in body should match",
        ),
        (
            "MemberAccount",
            "reserved tag key",
            member(json!({"tags": {"accountlinker.dev/member-account": "other/x"}})),
            "tag keys starting with aws: or accountlinker.dev/ are reserved",
        ),
        (
            "MemberAccount",
            "tag value too long",
            member(json!({"tags": {"team": "x".repeat(257)}})),
            "values at most 256",
        ),
    ];
    assert!(cases.len() >= 25);
    for (i, (kind, case, spec, expected)) in cases.into_iter().enumerate() {
        let api = api_for_kind(&client, &ns.name, kind);
        let obj = object(kind, &format!("invalid-{i}"), spec);
        let result = api.create(&PostParams::default(), &obj).await;
        assert_invalid(result, &format!("{kind}: {case}"), expected);
    }
    ns.cleanup().await;
}

/// Updates that change immutable fields are rejected; the same objects are valid otherwise.
#[tokio::test]
async fn immutable_fields_cannot_change() {
    let env = support::env();
    let client = env.client().await;
    let ns = TestNamespace::create(&client, "immutable").await;
    let cases: Vec<(&str, Value, Value, &str)> = vec![
        (
            "LinkedAccount",
            linked(json!({})),
            json!({"accountId": "210987654321"}),
            "accountId is immutable",
        ),
        (
            "BulkRegistration",
            bulk(json!({"stackSet": {"name": "one"}})),
            json!({"stackSet": {"name": "two"}}),
            "stackSet.name is immutable",
        ),
        (
            "BulkRegistration",
            bulk(json!({"stackSet": {"name": "one"}})),
            json!({"stackSet": {"name": null}}),
            "stackSet.name is immutable",
        ),
        (
            "BulkRegistration",
            bulk(json!({})),
            json!({"stackSet": {"name": "late"}}),
            "stackSet.name is immutable",
        ),
        (
            "BulkRegistration",
            bulk(json!({"targets": {"organizationalUnitIds": null, "accounts": ["111111111111"]}})),
            json!({"stackSet": {"permissionModel": "SelfManaged"}}),
            "stackSet.permissionModel is immutable",
        ),
        (
            "MemberAccount",
            member(json!({})),
            json!({"email": "other@example.com"}),
            "email is immutable",
        ),
    ];
    for (i, (kind, spec, change, expected)) in cases.into_iter().enumerate() {
        let api = api_for_kind(&client, &ns.name, kind);
        let name = format!("immutable-{i}");
        api.create(&PostParams::default(), &object(kind, &name, spec))
            .await
            .unwrap_or_else(|e| panic!("{kind} #{i}: valid object rejected: {e}"));
        let patch = json!({"spec": change});
        let result = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        assert_invalid(result, &format!("{kind} #{i}: {patch}"), expected);
    }
    // A mutable field still changes.
    let api = api_for_kind(&client, &ns.name, "LinkedAccount");
    api.patch(
        "immutable-0",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"suspend": true}})),
    )
    .await
    .expect("suspend is mutable");
    ns.cleanup().await;
}

#[tokio::test]
async fn defaults_are_applied_by_the_api_server() {
    let env = support::env();
    let client = env.client().await;
    let ns = TestNamespace::create(&client, "defaults").await;
    let api: Api<LinkedAccount> = Api::namespaced(client.clone(), &ns.name);
    let created = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "accountlinker.dev/v1alpha1", "kind": "LinkedAccount",
                "metadata": {"name": "defaults"}, "spec": {"accountId": "123456789012"}
            }))
            .unwrap(),
        )
        .await
        .expect("create");
    assert_eq!(created.spec.session_duration_seconds, 900);
    assert_eq!(
        created.spec.verify_interval, None,
        "verifyInterval defaults to the operator's --default-verify-interval"
    );
    assert!(!created.spec.suspend);
    assert_eq!(
        created.spec.role_name, None,
        "roleName is defaulted by the controller, not the schema"
    );

    let api: Api<MemberAccount> = Api::namespaced(client.clone(), &ns.name);
    let created = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "accountlinker.dev/v1alpha1", "kind": "MemberAccount",
                "metadata": {"name": "defaults"}, "spec": member(json!({}))
            }))
            .unwrap(),
        )
        .await
        .expect("create");
    assert_eq!(created.spec.role_name, "OrganizationAccountAccessRole");
    assert!(created.spec.link.enabled);

    // Sent untyped: the typed client would fill these defaults in itself.
    let created = api_for_kind(&client, &ns.name, "BulkRegistration")
        .create(
            &PostParams::default(),
            &object(
                "BulkRegistration",
                "defaults",
                bulk(json!({"template": null})),
            ),
        )
        .await
        .expect("create");
    let spec = &created.data["spec"];
    assert_eq!(
        spec["template"],
        json!({"builtin": {"roleName": "AccountLinkerAccess", "maxSessionDuration": 3600}}),
        "no template is the built-in one, with its defaults"
    );
    assert_eq!(
        spec["deletionPolicy"], "Retain",
        "a prune must not remove a fleet's roles"
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn kubectl_shows_printer_columns_and_field_docs() {
    let env = support::env();
    let client = env.client().await;
    let ns = TestNamespace::create(&client, "columns").await;
    for (kind, spec) in [
        ("LinkedAccount", linked(json!({}))),
        ("BulkRegistration", bulk(json!({}))),
        ("MemberAccount", member(json!({}))),
    ] {
        api_for_kind(&client, &ns.name, kind)
            .create(&PostParams::default(), &object(kind, "shown", spec))
            .await
            .expect("create");
    }
    let header = |resource: &str| {
        env.kubectl_ok(&["get", resource, "-n", &ns.name])
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        header("lacct"),
        [
            "NAME",
            "ACCOUNT",
            "ROLE",
            "READY",
            "REASON",
            "LAST-VERIFIED",
            "AGE"
        ]
    );
    assert_eq!(
        header("bulkreg"),
        [
            "NAME",
            "STACKSET",
            "TARGETS",
            "CURRENT",
            "ASSUMABLE",
            "FAILED",
            "READY",
            "AGE"
        ]
    );
    assert_eq!(
        header("macct"),
        [
            "NAME",
            "ACCOUNT-NAME",
            "ACCOUNT",
            "PARENT",
            "READY",
            "REASON",
            "AGE"
        ]
    );
    let all = env.kubectl_ok(&["get", "accountlinker", "-n", &ns.name, "-o", "name"]);
    for expected in [
        "linkedaccount.accountlinker.dev/shown",
        "bulkregistration.accountlinker.dev/shown",
        "memberaccount.accountlinker.dev/shown",
    ] {
        assert!(
            all.contains(expected),
            "`kubectl get accountlinker` lacks {expected}: {all}"
        );
    }

    // kubectl wraps descriptions: compare with whitespace folded.
    let explain = |field: &str| {
        env.kubectl_ok(&["explain", field])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (field, expected) in [
        (
            "linkedaccounts.spec.accountId",
            "The 12-digit ID of the AWS account to link",
        ),
        (
            "bulkregistrations.spec.deletionPolicy",
            "removes every stack instance and then the StackSet",
        ),
        ("memberaccounts.spec.email", "unique across AWS. Immutable."),
    ] {
        let text = explain(field);
        assert!(text.contains(expected), "kubectl explain {field}: {text}");
    }
    ns.cleanup().await;
}

#[tokio::test]
async fn status_is_a_subresource() {
    let env = support::env();
    let client = env.client().await;
    let ns = TestNamespace::create(&client, "status").await;
    let api: Api<LinkedAccount> = Api::namespaced(client.clone(), &ns.name);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "accountlinker.dev/v1alpha1", "kind": "LinkedAccount",
            "metadata": {"name": "sub"}, "spec": {"accountId": "123456789012"}
        }))
        .unwrap(),
    )
    .await
    .expect("create");

    // Writing status through the main resource is ignored.
    let with_status = json!({"spec": {"suspend": true}, "status": {"accountName": "ignored"}});
    let after = api
        .patch("sub", &PatchParams::default(), &Patch::Merge(&with_status))
        .await
        .expect("patch");
    assert!(after.spec.suspend);
    assert_eq!(
        after.status.as_ref().and_then(|s| s.account_name.clone()),
        None
    );

    // Writing spec through /status is ignored, and status is stored.
    let through_status = json!({"spec": {"suspend": false}, "status": {"accountName": "payments", "observedGeneration": 2}});
    let after = api
        .patch_status(
            "sub",
            &PatchParams::default(),
            &Patch::Merge(&through_status),
        )
        .await
        .expect("patch status");
    assert!(
        after.spec.suspend,
        "spec changed through the status subresource"
    );
    assert_eq!(
        after
            .status
            .as_ref()
            .and_then(|s| s.account_name.as_deref()),
        Some("payments")
    );

    // A status write does not bump the generation; a spec write does.
    let generation = after.metadata.generation;
    let after = api
        .patch_status(
            "sub",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"accountName": "p2"}})),
        )
        .await
        .expect("patch status");
    assert_eq!(after.metadata.generation, generation);
    let after = api
        .patch(
            "sub",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspend": false}})),
        )
        .await
        .expect("patch");
    assert_eq!(after.metadata.generation, generation.map(|g| g + 1));
    ns.cleanup().await;
}

//! Phase "definition": what the StackSet should be (template, parameters with the token,
//! permission model, settings), its fingerprint, and that the StackSet exists.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::EventType;
use tracing::info;

use super::management::HASH_TAG;
use super::ownership::{self, Owner, Standing};
use super::template;
use super::token::Token;
use super::{Context, Halt, Pass};
use crate::api::BulkRegistration;
use crate::api::bulk_registration::{
    CallAs as SpecCallAs, ConcurrencyMode, PermissionModel, RegionConcurrency, event, reason,
};
use crate::api::labels;
use crate::aws::stacksets::{
    CallAs, Permissions, Preferences, StackSetDefinition, StackSetInfo, StackSetRef, TemplateBody,
};
use crate::aws::{AwsError, ErrorClass};
use crate::controller::bulk_registration::status::Stall;
use crate::controller::hash_key::HashKey;

/// The StackSet's definition and its fingerprint (`status.templateHash` once applied).
pub struct Definition {
    pub spec: StackSetDefinition,
    pub hash: String,
}

/// Why the StackSet definition cannot be built.
pub enum DefinitionError {
    Blocked {
        reason: &'static str,
        message: String,
    },
    Kube(kube::Error),
    Aws(AwsError),
}

impl From<DefinitionError> for Halt {
    fn from(e: DefinitionError) -> Self {
        match e {
            DefinitionError::Blocked { reason, message } => {
                Halt::Stalled(Stall::stack_set(reason, message))
            }
            DefinitionError::Kube(e) => Halt::Failed(e.into()),
            DefinitionError::Aws(e) => Halt::Failed(e.into()),
        }
    }
}

/// The StackSet name as the spec says it: `spec.stackSet.name`, else the name derived from this
/// cluster, the namespace and the name ([`labels::derived_stack_set_name`]). Status does not
/// decide it; see [`super::ownership::locate`] for registrations of earlier releases.
pub fn stack_set_name(bulk: &BulkRegistration, cluster: &str) -> String {
    match &bulk.spec.stack_set.name {
        Some(name) => name.clone(),
        None => labels::derived_stack_set_name(
            cluster,
            &bulk.namespace().unwrap_or_default(),
            &bulk.name_any(),
        ),
    }
}

/// The StackSet as every call addresses it: [`stack_set_name`], as whom the spec says.
pub fn stack_set_ref(bulk: &BulkRegistration, cluster: &str) -> StackSetRef {
    StackSetRef {
        name: stack_set_name(bulk, cluster),
        call_as: match bulk.spec.stack_set.call_as {
            SpecCallAs::SelfAccount => CallAs::Management,
            SpecCallAs::DelegatedAdmin => CallAs::DelegatedAdmin,
        },
    }
}

/// Operation preferences, passed as given.
pub fn preferences(bulk: &BulkRegistration) -> Preferences {
    let p = bulk.spec.operation_preferences.clone().unwrap_or_default();
    Preferences {
        max_concurrent_count: p.max_concurrent_count,
        max_concurrent_percentage: p.max_concurrent_percentage,
        failure_tolerance_count: p.failure_tolerance_count,
        failure_tolerance_percentage: p.failure_tolerance_percentage,
        parallel_regions: p.region_concurrency_type == Some(RegionConcurrency::Parallel),
        region_order: p.region_order,
        soft_failure_tolerance: p.concurrency_mode == Some(ConcurrencyMode::SoftFailureTolerance),
    }
}

/// Builds the definition: the template (built in, from a ConfigMap, or a URL), the parameters
/// with the token, the permission model.
pub async fn build(
    bulk: &BulkRegistration,
    ctx: &Context,
    config_maps: &Api<ConfigMap>,
    token: &Token,
) -> Result<Definition, DefinitionError> {
    let source = &bulk.spec.template;
    let template = if let Some(builtin) = &source.builtin {
        let hub = hub_principal(ctx).await?;
        let principal = template::trusted_principal(builtin, &ctx.settings.partition, &hub);
        let names: Vec<&str> = bulk
            .spec
            .parameters
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        TemplateBody::Body(template::builtin(builtin, &principal, &names))
    } else if let Some(reference) = &source.config_map_ref {
        let cm = config_maps
            .get_opt(&reference.name)
            .await
            .map_err(DefinitionError::Kube)?
            .ok_or_else(|| DefinitionError::Blocked {
                reason: reason::TEMPLATE_CONFIG_MAP_NOT_FOUND,
                message: format!("ConfigMap {:?} not found", reference.name),
            })?;
        let body = cm
            .data
            .as_ref()
            .and_then(|d| d.get(&reference.key))
            .cloned()
            .ok_or_else(|| DefinitionError::Blocked {
                reason: reason::TEMPLATE_KEY_NOT_FOUND,
                message: format!(
                    "ConfigMap {:?} has no key {:?}",
                    reference.name, reference.key
                ),
            })?;
        TemplateBody::Body(body)
    } else {
        let url = source.url.clone().unwrap_or_default();
        if template::url_version(&url).is_none() {
            return Err(DefinitionError::Blocked {
                reason: reason::TEMPLATE_URL_NOT_VERSIONED,
                message: format!(
                    "template.url {url:?} names no S3 object version: add ?versionId=<the object's version>, so that the template hash covers the template's content"
                ),
            });
        }
        TemplateBody::Url(url)
    };
    let owner = Owner::of(bulk, &ctx.settings.cluster_id);
    let mut spec = assemble(bulk, template, token, &owner);
    let hash = definition_hash(&ctx.settings.hash_key, &spec);
    // The StackSet says which definition it was given: after a crash between CreateStackSet
    // and the status write, the next pass sees it is current ([`applied_hash`]).
    spec.tags.push((HASH_TAG.to_string(), hash.clone()));
    let applied = bulk
        .status
        .as_ref()
        .and_then(|s| s.template_hash.as_deref());
    if needs_vetting(source.builtin.is_some(), applied, &hash) {
        vet(ctx, &spec.template).await?;
    }
    Ok(Definition { spec, hash })
}

/// Whether the template is checked with GetTemplateSummary: a custom one, before the StackSet
/// gets it (CreateStackSet, or the UpdateStackSet a new fingerprint plans). One the StackSet
/// already has (`applied` is this fingerprint) passed before; the built-in one hides the token
/// by construction.
pub fn needs_vetting(builtin: bool, applied: Option<&str>, hash: &str) -> bool {
    !builtin && applied != Some(hash)
}

/// The principal the built-in role trusts by default: `--hub-role-arn`, else the operator's own
/// role from GetCallerIdentity (asked once per process).
async fn hub_principal(ctx: &Context) -> Result<String, DefinitionError> {
    if let Some(arn) = &ctx.settings.hub_role_arn {
        return Ok(arn.clone());
    }
    let principal = ctx
        .hub_principal
        .get_or_try_init(|| async {
            let caller = ctx.hub.caller().await?;
            template::hub_principal(&caller.arn).ok_or_else(|| {
                let message = format!(
                    "GetCallerIdentity answered {:?}, which names no role or user a trust policy can name; set --hub-role-arn",
                    caller.arn
                );
                AwsError::new("sts:GetCallerIdentity", ErrorClass::Rejected, message)
            })
        })
        .await
        .map_err(DefinitionError::Aws)?;
    Ok(principal.clone())
}

/// Refuses a custom template that would show the token (GetTemplateSummary); remembers one that
/// hides it.
async fn vet(ctx: &Context, template: &TemplateBody) -> Result<(), DefinitionError> {
    if ctx.vetted.contains(template) {
        return Ok(());
    }
    let parameters = match ctx.templates.template_parameters(template).await {
        Ok(parameters) => parameters,
        Err(e) if !e.class.is_retryable() => {
            return Err(DefinitionError::Blocked {
                reason: reason::AWS_REJECTED,
                message: super::aws_text(&e),
            });
        }
        Err(e) => return Err(DefinitionError::Aws(e)),
    };
    template::external_id_hidden(&parameters).map_err(|message| DefinitionError::Blocked {
        reason: reason::EXTERNAL_ID_NOT_NO_ECHO,
        message,
    })?;
    ctx.vetted.insert(template);
    Ok(())
}

/// The definition around a template: parameters (sorted, the token among them), permission
/// model, settings and the owner's tags.
fn assemble(
    bulk: &BulkRegistration,
    template: TemplateBody,
    token: &Token,
    owner: &Owner,
) -> StackSetDefinition {
    let mut parameters: Vec<(String, String)> = bulk
        .spec
        .parameters
        .iter()
        .map(|p| (p.name.clone(), p.value.clone()))
        .collect();
    parameters.push((
        template::EXTERNAL_ID_PARAMETER.into(),
        token.value.expose().to_string(),
    ));
    if bulk.spec.template.builtin.is_some() {
        // The built-in role trusts both: the token a rotation replaces while it overlaps, else
        // the same token again.
        let previous = token.previous.as_ref().map_or(&token.value, |p| &p.value);
        parameters.push((
            template::PREVIOUS_EXTERNAL_ID_PARAMETER.into(),
            previous.expose().to_string(),
        ));
    }
    parameters.sort();
    let spec = &bulk.spec.stack_set;
    let permissions = match spec.permission_model {
        PermissionModel::ServiceManaged => Permissions::ServiceManaged {
            auto_deployment: bulk
                .spec
                .auto_deployment
                .as_ref()
                .map(|a| (a.enabled, a.retain_stacks_on_account_removal)),
        },
        PermissionModel::SelfManaged => Permissions::SelfManaged {
            administration_role_arn: spec.administration_role_arn.clone(),
            execution_role_name: spec.execution_role_name.clone(),
        },
    };
    StackSetDefinition {
        template,
        parameters,
        permissions,
        managed_execution: spec.managed_execution,
        description: owner.description(),
        tags: owner.tags(),
    }
}

/// The fingerprint of everything an UpdateStackSet would change: template source, parameters
/// (the token among them: hashed, never stored) and settings, each written out field by field in
/// a fixed order, so that no change of a `Debug` implementation can start a fleet-wide update.
/// Keyed with the cluster's `key`, because it covers the token. The description and the owner
/// tags are not part of it: the first never changes, and the tags ride along with the next
/// update (a new UID after the object was re-created must not update every stack of the fleet).
pub fn definition_hash(key: &HashKey, d: &StackSetDefinition) -> String {
    let template = match &d.template {
        TemplateBody::Body(b) => format!("body:{b}"),
        TemplateBody::Url(u) => format!("url:{u}"),
    };
    let params: Vec<String> = d
        .parameters
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    template::keyed_fingerprint(
        key,
        &[
            &template,
            &params.join("\n"),
            &canonical_permissions(&d.permissions),
            &d.managed_execution.to_string(),
        ],
    )
}

/// The permission model as text. ARNs and role names are restricted to `[\w+=,.@:/-]` by the
/// CRD schema, so quoting needs no escapes.
fn canonical_permissions(p: &Permissions) -> String {
    let quoted = |v: &Option<String>| match v {
        Some(s) => format!("Some(\"{s}\")"),
        None => "None".to_string(),
    };
    match p {
        Permissions::ServiceManaged { auto_deployment } => {
            let auto = match auto_deployment {
                Some((enabled, retain)) => format!("Some(({enabled}, {retain}))"),
                None => "None".to_string(),
            };
            format!("ServiceManaged {{ auto_deployment: {auto} }}")
        }
        Permissions::SelfManaged {
            administration_role_arn,
            execution_role_name,
        } => format!(
            "SelfManaged {{ administration_role_arn: {}, execution_role_name: {} }}",
            quoted(administration_role_arn),
            quoted(execution_role_name)
        ),
    }
}

/// Makes sure the StackSet exists: trusted access first (ServiceManaged), then DescribeStackSet,
/// CreateStackSet when missing. A StackSet that vanished takes its operations with it.
pub(super) async fn ensure_stack_set(
    pass: &mut Pass<'_>,
    definition: &Definition,
) -> Result<(), Halt> {
    let ctx = pass.ctx;
    let bulk = pass.bulk;
    let service_managed = bulk.spec.stack_set.permission_model == PermissionModel::ServiceManaged;
    if service_managed && !ctx.stacksets.trusted_access(pass.set.call_as).await? {
        return Err(Halt::Stalled(Stall::stack_set(
            reason::TRUSTED_ACCESS_DISABLED,
            "trusted access between CloudFormation StackSets and AWS Organizations is \
            disabled: enable it from the management account with `aws cloudformation \
            activate-organizations-access` (or in the CloudFormation console under StackSets > \
            Enable trusted access); the registration continues on its own once it is on",
        )));
    }
    if let Some(info) = ownership::locate(pass).await? {
        return take_existing(pass, info, &definition.hash);
    }
    pass.next.operation = None;
    match ctx.stacksets.create(&pass.set, &definition.spec).await {
        Ok(id) => {
            pass.next.stack_set_id = Some(id);
            pass.next.template_hash = Some(definition.hash.clone());
            let note = format!("created StackSet {}", pass.set.name);
            pass.publish(EventType::Normal, event::STACK_SET_CREATED, &note)
                .await;
            Ok(())
        }
        // The name is taken: by this registration's own CreateStackSet whose answer was lost,
        // or by someone since `locate` looked. Whose it is decides, as for one found above.
        Err(e) if e.class == ErrorClass::AlreadyExists => {
            match ctx.stacksets.describe(&pass.set).await? {
                Some(info) => take_existing(pass, info, &definition.hash),
                None => Err(Halt::Stalled(Stall::stack_set(
                    reason::AWS_REJECTED,
                    super::aws_text(&e),
                ))),
            }
        }
        Err(e) if !e.class.is_retryable() => Err(Halt::Stalled(Stall::stack_set(
            reason::AWS_REJECTED,
            super::aws_text(&e),
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The definition a StackSet of this registration holds, when status does not say (`recorded`
/// is `None`: the status write after CreateStackSet was lost): its hash tag, if it is `hash`.
/// Then no UpdateStackSet repeats what the lost create did. Status, when it has a hash, decides.
pub fn applied_hash(
    standing: &Standing,
    recorded: Option<&str>,
    tags: &std::collections::BTreeMap<String, String>,
    hash: &str,
) -> Option<String> {
    match recorded {
        Some(recorded) => Some(recorded.to_string()),
        None if *standing == Standing::Ours
            && tags.get(HASH_TAG).map(String::as_str) == Some(hash) =>
        {
            Some(hash.to_string())
        }
        None => None,
    }
}

/// Uses the StackSet `info` found under the registration's name when its tags make it this
/// registration's (or adoption is asked for and permitted); stalls naming its owner otherwise.
fn take_existing(pass: &mut Pass<'_>, info: StackSetInfo, hash: &str) -> Result<(), Halt> {
    let bulk = pass.bulk;
    let adopt = bulk.spec.stack_set.adopt;
    let standing = ownership::standing_of(&info, &pass.owner());
    if let Err(message) = ownership::permits(&standing, &pass.set.name, true, adopt) {
        return Err(Halt::Stalled(Stall::stack_set(
            reason::STACK_SET_NOT_OWNED,
            message,
        )));
    }
    if standing == Standing::Untagged {
        // Adopting: the UpdateStackSet that brings it to the spec is the one that tags it,
        // and it comes before anything else is changed.
        info!(name = %bulk.name_any(), stack_set = %pass.set.name, "adopting an untagged StackSet");
        pass.next.template_hash = None;
    }
    let recorded = pass.next.template_hash.as_deref();
    pass.next.template_hash = applied_hash(&standing, recorded, &info.tags, hash);
    pass.next.stack_set_id = Some(info.id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bulk(name: &str, spec: serde_json::Value) -> BulkRegistration {
        let mut b = BulkRegistration::new(name, serde_json::from_value(spec).unwrap());
        b.metadata.namespace = Some("platform".into());
        b
    }

    fn spec() -> serde_json::Value {
        json!({
            "stackSet": {"permissionModel": "SelfManaged"},
            "template": {"builtin": {}},
            "targets": {"accounts": ["111111111111"]},
        })
    }

    fn base() -> StackSetDefinition {
        StackSetDefinition {
            template: TemplateBody::Body("a".into()),
            parameters: vec![("ExternalId".into(), "one".into())],
            permissions: Permissions::ServiceManaged {
                auto_deployment: None,
            },
            managed_execution: false,
            description: "d".into(),
            tags: vec![("accountlinker.dev/uid".into(), "u-1".into())],
        }
    }

    /// Issue 14: a crash between CreateStackSet and the status write that records the hash
    /// must not cost an UpdateStackSet: the StackSet's own hash tag says it is current.
    #[test]
    fn a_stack_set_s_hash_tag_stands_in_for_a_lost_status_write() {
        let tags = |hash: &str| {
            std::collections::BTreeMap::from([(HASH_TAG.to_string(), hash.to_string())])
        };
        let none = std::collections::BTreeMap::new();
        let cases = [
            (Standing::Ours, None, tags("h"), Some("h")),
            (Standing::Ours, None, tags("old"), None),
            (Standing::Ours, None, none.clone(), None),
            (Standing::Untagged, None, tags("h"), None),
            (Standing::Legacy, None, tags("h"), None),
            (Standing::Ours, Some("old"), tags("h"), Some("old")),
        ];
        for (standing, recorded, found, want) in cases {
            assert_eq!(
                applied_hash(&standing, recorded, &found, "h").as_deref(),
                want,
                "{standing:?} {recorded:?} {found:?}"
            );
        }
    }

    #[test]
    fn custom_templates_are_checked_until_the_stack_set_has_them() {
        let cases = [
            (false, None, true),
            (false, Some("old"), true),
            (false, Some("h"), false),
            (true, None, false),
            (true, Some("old"), false),
        ];
        for (builtin, applied, want) in cases {
            assert_eq!(
                needs_vetting(builtin, applied, "h"),
                want,
                "{builtin} {applied:?}"
            );
        }
    }

    /// The spec's name, else the derived one; status never names the StackSet.
    #[test]
    fn stack_set_names_come_from_the_spec_or_the_derivation() {
        let mut derived = bulk("workloads", spec());
        derived.status = Some(crate::api::BulkRegistrationStatus {
            stack_set_name: Some("someone-elses".into()),
            ..Default::default()
        });
        assert_eq!(
            stack_set_ref(&derived, "c-1").name,
            labels::derived_stack_set_name("c-1", "platform", "workloads")
        );
        let mut named = spec();
        named["stackSet"]["name"] = json!("chosen");
        let mut named = bulk("w", named);
        named.status = derived.status.clone();
        assert_eq!(stack_set_ref(&named, "c-1").name, "chosen");
    }

    /// The API server fills these in; an object read without them means the same.
    #[test]
    fn absent_template_is_the_builtin_one_and_deletion_retains() {
        use crate::api::bulk_registration::BulkDeletionPolicy;
        let mut bare = spec();
        bare.as_object_mut().unwrap().remove("template");
        let bare = bulk("w", bare);
        assert_eq!(bare.spec.template, bulk("w", spec()).spec.template);
        let builtin = bare.spec.template.builtin.expect("the builtin template");
        assert_eq!(builtin.role_name, "AccountLinkerAccess");
        assert_eq!(builtin.max_session_duration, 3600);
        assert_eq!(bare.spec.deletion_policy, BulkDeletionPolicy::Retain);
    }

    fn key(byte: u8) -> HashKey {
        HashKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn definition_hashes_change_with_what_is_deployed_and_with_the_key() {
        let k = key(1);
        let mut rotated = base();
        rotated.parameters[0].1 = "two".into();
        let mut auto = base();
        auto.permissions = Permissions::ServiceManaged {
            auto_deployment: Some((true, false)),
        };
        let mut described = base();
        described.description = "other".into();
        described.tags[0].1 = "u-2".into();
        assert_eq!(definition_hash(&k, &base()), definition_hash(&k, &base()));
        assert_ne!(definition_hash(&k, &base()), definition_hash(&k, &rotated));
        assert_ne!(definition_hash(&k, &base()), definition_hash(&k, &auto));
        assert_eq!(
            definition_hash(&k, &base()),
            definition_hash(&k, &described)
        );
        assert_ne!(
            definition_hash(&k, &base()),
            definition_hash(&key(2), &base())
        );
    }

    /// Under one key the hashes stay what they are: a changed layout would update every
    /// StackSet after an upgrade. (The plain digests of earlier releases — base: 9e98a42ef4bb41b8 —
    /// changed once, to these keyed ones.)
    #[test]
    fn hashes_under_a_key_are_stable_across_releases() {
        let mut self_managed = base();
        self_managed.permissions = Permissions::SelfManaged {
            administration_role_arn: Some(
                "arn:aws:iam::111122223333:role/AWSCloudFormationStackSetAdministrationRole".into(),
            ),
            execution_role_name: None,
        };
        let mut auto = base();
        auto.permissions = Permissions::ServiceManaged {
            auto_deployment: Some((true, false)),
        };
        let cases = [
            (base(), "5285b95471d7e5fa"),
            (auto, "5264848c6221710d"),
            (self_managed, "b0064f1ed5dcca3f"),
        ];
        for (definition, want) in cases {
            assert_eq!(
                definition_hash(&key(1), &definition),
                want,
                "{:?}",
                definition.permissions
            );
        }
    }

    #[test]
    fn the_builtin_template_trusts_the_replaced_token_only_while_a_rotation_overlaps() {
        use super::super::token::{Previous, Token};
        use crate::controller::external_id::ExternalId;
        let owner = Owner::of(&bulk("w", spec()), "cluster-1");
        let mut token = Token {
            value: ExternalId::new("new-value"),
            secret_name: "w-registration-token-0123456789".into(),
            key: "externalId".into(),
            rotated: None,
            replaced: None,
            previous: None,
        };
        let parameters = |b: &BulkRegistration, token: &Token| {
            assemble(b, TemplateBody::Body("t".into()), token, &owner).parameters
        };
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        let builtin = bulk("w", spec());
        assert_eq!(
            parameters(&builtin, &token),
            vec![
                p("ExternalId", "new-value"),
                p("PreviousExternalId", "new-value")
            ]
        );
        token.previous = Some(Previous {
            value: ExternalId::new("old-value"),
            secret_name: "w-registration-token".into(),
        });
        assert_eq!(
            parameters(&builtin, &token),
            vec![
                p("ExternalId", "new-value"),
                p("PreviousExternalId", "old-value")
            ]
        );
        // A custom template declares what it declares: only ExternalId is passed.
        let mut custom = spec();
        custom["template"] = json!({"configMapRef": {"name": "t", "key": "k"}});
        assert_eq!(
            parameters(&bulk("w", custom), &token),
            vec![p("ExternalId", "new-value")]
        );
    }
}

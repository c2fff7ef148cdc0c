//! `verify` and `rotate`: set a request annotation ([`crate::api::annotations`]) with a merge
//! patch, the value the current unix seconds. The controller does the work and records the
//! value as handled; the command says where to see that.

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde::Serialize;

use super::{Kind, Out, PluginError, api_error};
use crate::api::annotations::{ROTATE_REQUESTED_AT, VERIFY_REQUESTED_AT};

/// What a request command did (also its JSON/YAML form).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Requested {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub annotation: &'static str,
    pub value: String,
    /// The status field that says the request was handled.
    pub handled_in: &'static str,
}

/// The merge patch that sets `annotation` to `value`.
pub fn patch(annotation: &str, value: &str) -> serde_json::Value {
    serde_json::json!({"metadata": {"annotations": {annotation: value}}})
}

/// The request a command makes of `kind`, or why it cannot.
pub fn annotation_for(
    rotate: bool,
    kind: Kind,
) -> Result<(&'static str, &'static str), PluginError> {
    match (rotate, kind) {
        (false, Kind::LinkedAccount | Kind::BulkRegistration) => {
            Ok((VERIFY_REQUESTED_AT, "status.lastHandledVerifyRequest"))
        }
        (true, Kind::BulkRegistration) => Ok((ROTATE_REQUESTED_AT, "status.lastHandledRotateRequest")),
        (false, _) => Err(PluginError::Usage(
            "verify takes a LinkedAccount or a BulkRegistration (a MemberAccount's link is the LinkedAccount of the same name)".into(),
        )),
        (true, _) => Err(PluginError::Usage(
            "rotate takes a BulkRegistration: only a registration's token is rotated by the operator".into(),
        )),
    }
}

/// Sets the request annotation `verify` (or `rotate`) asks for on `kind`/`name`.
pub async fn request(
    client: Client,
    namespace: &str,
    kind: Kind,
    name: &str,
    rotate: bool,
    out: &mut Out<'_>,
) -> Result<(), PluginError> {
    let (annotation, handled_in) = annotation_for(rotate, kind)?;
    let value = out.now.as_second().to_string();
    let resource = kind.resource();
    let api = Api::<DynamicObject>::namespaced_with(client, namespace, &resource);
    let body = patch(annotation, &value);
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Err(PluginError::NotFound {
                kind: kind.as_str(),
                name: name.to_string(),
                namespace: namespace.to_string(),
            });
        }
        Err(e) => {
            let scope = format!("namespace {namespace}");
            return Err(api_error(e, "patch", &resource.plural, &scope));
        }
        Ok(_) => {}
    }
    let done = Requested {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
        annotation,
        value,
        handled_in,
    };
    if !out.structured(&done)? {
        writeln!(
            out.writer,
            "{}/{} annotated {}={}; the operator records it in {} when handled",
            kind.as_str(),
            name,
            done.annotation,
            done.value,
            done.handled_in
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_set_one_annotation_and_only_where_a_controller_honours_it() {
        assert_eq!(
            patch(VERIFY_REQUESTED_AT, "1700000000"),
            serde_json::json!({"metadata": {"annotations": {"accountlinker.dev/verify-requested-at": "1700000000"}}})
        );
        assert!(annotation_for(false, Kind::LinkedAccount).is_ok());
        assert!(annotation_for(false, Kind::BulkRegistration).is_ok());
        assert!(annotation_for(false, Kind::MemberAccount).is_err());
        assert_eq!(
            annotation_for(true, Kind::BulkRegistration).unwrap().0,
            ROTATE_REQUESTED_AT
        );
        assert!(annotation_for(true, Kind::LinkedAccount).is_err());
    }
}

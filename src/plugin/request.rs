//! `verify` and `rotate`: set a request annotation ([`crate::api::annotations`]) with a merge
//! patch, the value the current unix seconds. The controller does the work and records the
//! value as handled; the command says where to see that.

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;

use super::{Kind, Out, PluginError, api_error};
use crate::api::annotations::{ROTATE_REQUESTED_AT, VERIFY_REQUESTED_AT};
use crate::api::{BulkRegistration, LinkedAccount};

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

async fn request(
    client: Client,
    namespace: &str,
    kind: Kind,
    name: &str,
    rotate: bool,
    out: &mut Out<'_>,
) -> Result<(), PluginError> {
    let (annotation, handled_in) = annotation_for(rotate, kind)?;
    let value = out.now.as_second().to_string();
    let body = patch(annotation, &value);
    let params = PatchParams::default();
    let resource = format!("{}s", kind.as_str().to_lowercase());
    let scope = format!("namespace {namespace}");
    let result = match kind {
        Kind::LinkedAccount => Api::<LinkedAccount>::namespaced(client, namespace)
            .patch(name, &params, &Patch::Merge(&body))
            .await
            .map(drop),
        _ => Api::<BulkRegistration>::namespaced(client, namespace)
            .patch(name, &params, &Patch::Merge(&body))
            .await
            .map(drop),
    };
    match result {
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Err(PluginError::NotFound {
                kind: kind.as_str(),
                name: name.to_string(),
                namespace: namespace.to_string(),
            });
        }
        Err(e) => return Err(api_error(e, "patch", &resource, &scope)),
        Ok(()) => {}
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

/// `verify KIND/NAME`.
pub async fn verify(
    client: Client,
    namespace: &str,
    kind: Kind,
    name: &str,
    out: &mut Out<'_>,
) -> Result<(), PluginError> {
    request(client, namespace, kind, name, false, out).await
}

/// `rotate bulkreg/NAME`.
pub async fn rotate(
    client: Client,
    namespace: &str,
    kind: Kind,
    name: &str,
    out: &mut Out<'_>,
) -> Result<(), PluginError> {
    request(client, namespace, kind, name, true, out).await
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

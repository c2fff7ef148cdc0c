//! Small shapes shared by several kinds.

use kube::KubeSchema;
use schemars::{Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A key in a Secret in the object's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as this object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A key in a ConfigMap in the object's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap, in the same namespace as this object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the ConfigMap's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// The pattern of a 12-digit AWS account ID.
pub const ACCOUNT_ID_PATTERN: &str = "^[0-9]{12}$";
/// Go-style durations such as `90s`, `30m`, `1h30m` or `720h`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";
/// An IAM role name.
pub const ROLE_NAME_PATTERN: &str = r"^[\w+=,.@-]{1,64}$";

/// Labels for objects the operator creates: at most 64, keys at most a qualified name's 316
/// characters (253 prefix, `/`, 63 name), values at most 63. Rejecting them at admission beats
/// failing every child.
pub fn label_map_schema(_: &mut SchemaGenerator) -> Schema {
    bounded_map_schema(63)
}

/// Annotations for objects the operator creates: like labels, but values up to 4096 characters.
pub fn annotation_map_schema(_: &mut SchemaGenerator) -> Schema {
    bounded_map_schema(4096)
}

fn bounded_map_schema(max_value: u32) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": {"type": "string", "maxLength": max_value},
        "x-kubernetes-validations": [{
            "rule": "self.all(k, size(k) <= 316)",
            "message": "keys must be at most 316 characters (a 253-character prefix, '/', a 63-character name)",
        }],
    })
}

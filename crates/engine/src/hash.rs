//! Pod-template hashes and names, as the Deployment controller (and Argo Rollouts) make
//! them: FNV-1a 32 over the canonical JSON of the template without its
//! `pod-template-hash` label, encoded with Kubernetes' safe alphabet. `switchyard-local`'s
//! Deployment controller uses the same functions, so that a Rollout and a Deployment with
//! the same template get the same hash.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Value, json};

/// The label telling the ReplicaSets (and pods) of one Rollout apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Revision annotation on a Rollout's ReplicaSets (Argo's `rollout.argoproj.io/revision`).
pub const REVISION: &str = "rollout.argoproj.io/revision";
/// When a ReplicaSet kept after a switch or an abort scales to zero.
pub const SCALE_DOWN_DEADLINE: &str = "argo-rollouts.argoproj.io/scale-down-deadline";
/// The alphabet of `rand.SafeEncodeString` (no vowels, no confusable digits).
pub const SAFE_ALPHABET: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";

/// Maps each byte of `s` onto [`SAFE_ALPHABET`], as `rand.SafeEncodeString` does.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn drop_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), drop_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(drop_nulls).collect()),
        other => other.clone(),
    }
}

fn without_hash(template: &Value) -> Value {
    let mut template = drop_nulls(template);
    if let Some(meta) = template.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove(POD_TEMPLATE_HASH);
            if labels.is_empty() {
                meta.remove("labels");
            }
        }
        if meta.is_empty()
            && let Some(map) = template.as_object_mut()
        {
            map.remove("metadata");
        }
    }
    template
}

fn to_value(template: &PodTemplateSpec) -> Value {
    serde_json::to_value(template).unwrap_or(Value::Null)
}

/// The `pod-template-hash` of a template (`controller.ComputeHash` without a collision
/// count): FNV-1a 32 over its canonical JSON, the decimal value safe-encoded. The
/// template's own `pod-template-hash` label, if any, is ignored.
pub fn pod_template_hash(template: &PodTemplateSpec) -> String {
    compute_hash(&without_hash(&to_value(template)), None)
}

/// `controller.ComputeHash`: FNV-1a 32 over the template as given (canonical JSON here,
/// Go's object dump there), then the collisionCount as 8 little-endian bytes, the decimal
/// sum encoded with [`safe_encode`].
pub fn compute_hash(template: &Value, collision_count: Option<i32>) -> String {
    let mut text = String::new();
    write_canonical(template, &mut text);
    let mut hash: u32 = 0x811c_9dc5;
    let mut write = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    write(text.as_bytes());
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        write(&bytes);
    }
    safe_encode(&hash.to_string())
}

/// Whether two templates are equal but for the `pod-template-hash` label
/// (`deploymentutil.EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    equal_ignore_hash_json(&to_value(a), &to_value(b))
}

/// [`equal_ignore_hash`] on JSON templates (absent and null fields are equal, as Go's
/// semantic equality treats nil and empty labels).
pub fn equal_ignore_hash_json(a: &Value, b: &Value) -> bool {
    without_hash(a) == without_hash(b)
}

/// The name of a Rollout's ReplicaSet for a hash: `<rollout>-<hash>`, as Argo names it.
pub fn replica_set_name(rollout: &str, hash: &str) -> String {
    format!("{rollout}-{hash}")
}

/// The template with the `pod-template-hash` label set and `extra` labels and annotations
/// (a strategy's canary/stable/active/preview metadata) merged in.
pub fn labelled_template(
    template: &PodTemplateSpec,
    hash: &str,
    extra: Option<&switchyard_api::rollout::PodTemplateMetadata>,
) -> PodTemplateSpec {
    let mut value = to_value(template);
    if !value["metadata"].is_object() {
        value["metadata"] = json!({});
    }
    for field in ["labels", "annotations"] {
        if !value["metadata"][field].is_object() {
            value["metadata"][field] = json!({});
        }
    }
    if let Some(extra) = extra {
        for (k, v) in extra.labels.iter().flatten() {
            value["metadata"]["labels"][k] = json!(v);
        }
        for (k, v) in extra.annotations.iter().flatten() {
            value["metadata"]["annotations"][k] = json!(v);
        }
    }
    value["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(hash);
    if value["metadata"]["annotations"]
        .as_object()
        .is_some_and(|m| m.is_empty())
        && let Some(meta) = value["metadata"].as_object_mut()
    {
        meta.remove("annotations");
    }
    serde_json::from_value(value).unwrap_or_else(|_| template.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap()
    }

    #[test]
    fn hash_ignores_its_own_label_and_tells_templates_apart() {
        let a = template("a");
        let hash = pod_template_hash(&a);
        assert!(hash.bytes().all(|b| SAFE_ALPHABET.contains(&b)) && hash.len() <= 10);
        let labelled = labelled_template(&a, &hash, None);
        assert_eq!(pod_template_hash(&labelled), hash);
        assert!(equal_ignore_hash(&a, &labelled));
        assert_ne!(pod_template_hash(&template("b")), hash);
        assert_eq!(replica_set_name("web", &hash), format!("web-{hash}"));
    }
}

//! JSON merge patch (RFC 7386) and kubectl's three-way merge for `apply`.

use serde_json::{Map, Value};

/// Applies a JSON merge patch to `target` in place (RFC 7386): objects merge key by key,
/// `null` removes a key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The merge patch `kubectl apply` sends (CreateThreeWayJSONMergePatch): fields removed
/// from the manifest since the last apply are deleted, and every field of the new
/// manifest that differs from the live object is set. Fields only the server or a
/// controller wrote (such as an allocated clusterIP) are left alone.
pub fn three_way_patch(original: &Value, modified: &Value, current: &Value) -> Value {
    let mut patch = deletions(original, modified).unwrap_or(Value::Object(Map::new()));
    if let Some(changes) = additions(current, modified) {
        merge_patch_into_patch(&mut patch, changes);
    }
    patch
}

/// Keys present in `original` and absent from `modified`, as `null`s.
fn deletions(original: &Value, modified: &Value) -> Option<Value> {
    let (Value::Object(original), Value::Object(modified)) = (original, modified) else {
        return None;
    };
    let mut out = Map::new();
    for (key, old) in original {
        match modified.get(key) {
            None => {
                out.insert(key.clone(), Value::Null);
            }
            Some(new) => {
                if let Some(nested) = deletions(old, new) {
                    out.insert(key.clone(), nested);
                }
            }
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// Fields of `modified` whose value differs from `current`, never removing anything.
fn additions(current: &Value, modified: &Value) -> Option<Value> {
    match (current, modified) {
        (Value::Object(current), Value::Object(modified)) => {
            let mut out = Map::new();
            for (key, new) in modified {
                match current.get(key) {
                    Some(old) => {
                        if let Some(nested) = additions(old, new) {
                            out.insert(key.clone(), nested);
                        }
                    }
                    None if new.is_null() => {}
                    None => {
                        out.insert(key.clone(), new.clone());
                    }
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        // An explicit null in the manifest asks for removal.
        (current, modified) if current == modified => None,
        (_, modified) => Some(modified.clone()),
    }
}

fn merge_patch_into_patch(patch: &mut Value, more: Value) {
    match (patch, more) {
        (Value::Object(patch), Value::Object(more)) => {
            for (key, value) in more {
                match patch.get_mut(key.as_str()) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge_patch_into_patch(existing, value);
                    }
                    _ => {
                        patch.insert(key, value);
                    }
                }
            }
        }
        (patch, more) => *patch = more,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7386_examples() {
        // The table of RFC 7386, Appendix A.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            let mut t = target.clone();
            merge_patch(&mut t, &patch);
            assert_eq!(t, expected, "{target} + {patch}");
        }
    }

    #[test]
    fn three_way_keeps_server_fields_and_removes_dropped_ones() {
        let original = json!({"spec": {"ports": [{"port": 80}], "selector": {"app": "a"}, "type": "NodePort"}});
        let modified = json!({"spec": {"ports": [{"port": 81}], "selector": {"app": "a"}}});
        let current = json!({"spec": {"ports": [{"port": 80}], "selector": {"app": "a"}, "type": "NodePort", "clusterIP": "127.96.0.1"}});
        let patch = three_way_patch(&original, &modified, &current);
        let mut live = current.clone();
        merge_patch(&mut live, &patch);
        assert_eq!(
            live,
            json!({"spec": {"ports": [{"port": 81}], "selector": {"app": "a"}, "clusterIP": "127.96.0.1"}})
        );
    }

    #[test]
    fn three_way_restores_fields_a_controller_changed() {
        let manifest = json!({"spec": {"replicas": 3}});
        let current = json!({"spec": {"replicas": 5}});
        let patch = three_way_patch(&manifest, &manifest, &current);
        assert_eq!(patch, json!({"spec": {"replicas": 3}}));
        let same = three_way_patch(&manifest, &manifest, &manifest);
        assert_eq!(same, json!({}));
    }
}

//! JSON patch (RFC 6902): `add`, `remove`, `replace`, `move`, `copy` and `test` over JSON
//! pointers (RFC 6901), applied all or nothing, as kube-apiserver applies
//! `application/json-patch+json` (it uses evanphx/json-patch: the same operations, `-` to
//! append, and at most 10,000 operations per patch).

use serde_json::Value;

/// kube-apiserver's cap on operations in one JSON patch
/// (`staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go`, `maxJSONPatchOperations`).
pub const MAX_OPERATIONS: usize = 10_000;

/// Why a JSON patch could not be decoded (the API answers 400) or applied (422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPatchError {
    /// The patch is not an array of operations.
    #[error("{0}")]
    Malformed(String),
    /// An operation failed against the object.
    #[error("{0}")]
    Failed(String),
}

impl JsonPatchError {
    /// True when the patch itself is malformed (400) rather than inapplicable (422).
    pub fn is_malformed(&self) -> bool {
        matches!(self, JsonPatchError::Malformed(_))
    }
}

/// Applies `patch` to `target`, returning the patched value; `target` is untouched when
/// any operation fails.
pub fn apply(target: &Value, patch: &Value) -> Result<Value, JsonPatchError> {
    let operations = patch.as_array().ok_or_else(|| {
        JsonPatchError::Malformed(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch".into(),
        )
    })?;
    if operations.len() > MAX_OPERATIONS {
        return Err(JsonPatchError::Failed(format!(
            "The allowed maximum operations in a JSON patch is {MAX_OPERATIONS}, got {}",
            operations.len()
        )));
    }
    let mut doc = target.clone();
    for op in operations {
        apply_one(&mut doc, op)?;
    }
    Ok(doc)
}

fn field<'a>(op: &'a Value, name: &str) -> Result<&'a Value, JsonPatchError> {
    op.get(name)
        .ok_or_else(|| JsonPatchError::Malformed(format!("operation {op} is missing {name:?}")))
}

fn pointer_field(op: &Value, name: &str) -> Result<Vec<String>, JsonPatchError> {
    let text = field(op, name)?.as_str().ok_or_else(|| {
        JsonPatchError::Malformed(format!("operation {op}: {name:?} is not a string"))
    })?;
    parse_pointer(text)
}

/// RFC 6901: `""` is the whole document, `/a/b` its tokens, `~1` is `/` and `~0` is `~`.
pub fn parse_pointer(text: &str) -> Result<Vec<String>, JsonPatchError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let rest = text.strip_prefix('/').ok_or_else(|| {
        JsonPatchError::Failed(format!("JSON pointer {text:?} must start with '/'"))
    })?;
    rest.split('/')
        .map(|token| {
            if token.contains('~') {
                let bad = token
                    .split('~')
                    .skip(1)
                    .any(|after| !(after.starts_with('0') || after.starts_with('1')));
                if bad {
                    return Err(JsonPatchError::Failed(format!(
                        "JSON pointer {text:?} has an invalid escape"
                    )));
                }
            }
            Ok(token.replace("~1", "/").replace("~0", "~"))
        })
        .collect()
}

fn apply_one(doc: &mut Value, op: &Value) -> Result<(), JsonPatchError> {
    let kind = field(op, "op")?.as_str().ok_or_else(|| {
        JsonPatchError::Malformed(format!("operation {op}: \"op\" is not a string"))
    })?;
    match kind {
        "add" => {
            let path = pointer_field(op, "path")?;
            add(doc, &path, field(op, "value")?.clone())
        }
        "remove" => {
            let path = pointer_field(op, "path")?;
            remove(doc, &path).map(drop)
        }
        "replace" => {
            let path = pointer_field(op, "path")?;
            let value = field(op, "value")?.clone();
            let slot = get_mut(doc, &path)?;
            *slot = value;
            Ok(())
        }
        "move" => {
            let from = pointer_field(op, "from")?;
            let path = pointer_field(op, "path")?;
            if path.len() > from.len() && path[..from.len()] == from[..] {
                return Err(JsonPatchError::Failed(format!(
                    "cannot move {} into its own child {}",
                    render(&from),
                    render(&path)
                )));
            }
            let value = remove(doc, &from)?;
            add(doc, &path, value)
        }
        "copy" => {
            let from = pointer_field(op, "from")?;
            let path = pointer_field(op, "path")?;
            let value = get(doc, &from)?.clone();
            add(doc, &path, value)
        }
        "test" => {
            let path = pointer_field(op, "path")?;
            let expected = field(op, "value")?;
            let actual = get(doc, &path)?;
            if actual == expected {
                Ok(())
            } else {
                Err(JsonPatchError::Failed(format!(
                    "testing value {} failed: test failed",
                    render(&path)
                )))
            }
        }
        other => Err(JsonPatchError::Malformed(format!(
            "Unexpected kind: {other}"
        ))),
    }
}

fn render(path: &[String]) -> String {
    path.iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn missing(path: &[String]) -> JsonPatchError {
    JsonPatchError::Failed(format!(
        "doc is missing path: \"{}\": missing value",
        render(path)
    ))
}

fn array_index(
    token: &str,
    len: usize,
    allow_end: bool,
    path: &[String],
) -> Result<usize, JsonPatchError> {
    // RFC 6901: no leading zeros, no signs.
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    let index = valid
        .then(|| token.parse::<usize>().ok())
        .flatten()
        .ok_or_else(|| {
            JsonPatchError::Failed(format!("invalid array index {token:?} in {}", render(path)))
        })?;
    let limit = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if index > limit || (!allow_end && len == 0) {
        return Err(JsonPatchError::Failed(format!(
            "Unable to access invalid index: {index} in {}",
            render(path)
        )));
    }
    Ok(index)
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Result<&'a Value, JsonPatchError> {
    let mut node = doc;
    for token in path {
        node = match node {
            Value::Object(map) => map.get(token).ok_or_else(|| missing(path))?,
            Value::Array(items) => &items[array_index(token, items.len(), false, path)?],
            _ => return Err(missing(path)),
        };
    }
    Ok(node)
}

fn get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Result<&'a mut Value, JsonPatchError> {
    let mut node = doc;
    for token in path {
        node = match node {
            Value::Object(map) => map.get_mut(token).ok_or_else(|| missing(path))?,
            Value::Array(items) => {
                let index = array_index(token, items.len(), false, path)?;
                &mut items[index]
            }
            _ => return Err(missing(path)),
        };
    }
    Ok(node)
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), JsonPatchError> {
    let Some((last, parent_path)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, parent_path)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                array_index(last, items.len(), true, path)?
            };
            items.insert(index, value);
            Ok(())
        }
        _ => Err(missing(path)),
    }
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, JsonPatchError> {
    let Some((last, parent_path)) = path.split_last() else {
        return Err(JsonPatchError::Failed(
            "cannot remove the whole document".into(),
        ));
    };
    match get_mut(doc, parent_path)? {
        Value::Object(map) => map.remove(last).ok_or_else(|| missing(path)),
        Value::Array(items) => {
            let index = array_index(last, items.len(), false, path)?;
            Ok(items.remove(index))
        }
        _ => Err(missing(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The examples of RFC 6902 appendix A, each (document, patch, result or None for an
    /// error).
    #[test]
    fn rfc6902_appendix_a() {
        let cases: Vec<(&str, Value, Value, Option<Value>)> = vec![
            (
                "A.1 adding an object member",
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux"}]),
                Some(json!({"baz": "qux", "foo": "bar"})),
            ),
            (
                "A.2 adding an array element",
                json!({"foo": ["bar", "baz"]}),
                json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
                Some(json!({"foo": ["bar", "qux", "baz"]})),
            ),
            (
                "A.3 removing an object member",
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "remove", "path": "/baz"}]),
                Some(json!({"foo": "bar"})),
            ),
            (
                "A.4 removing an array element",
                json!({"foo": ["bar", "qux", "baz"]}),
                json!([{"op": "remove", "path": "/foo/1"}]),
                Some(json!({"foo": ["bar", "baz"]})),
            ),
            (
                "A.5 replacing a value",
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "replace", "path": "/baz", "value": "boo"}]),
                Some(json!({"baz": "boo", "foo": "bar"})),
            ),
            (
                "A.6 moving a value",
                json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
                json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
                Some(json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}})),
            ),
            (
                "A.7 moving an array element",
                json!({"foo": ["all", "grass", "cows", "eat"]}),
                json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
                Some(json!({"foo": ["all", "cows", "eat", "grass"]})),
            ),
            (
                "A.8 testing a value: success",
                json!({"baz": "qux", "foo": ["a", 2, "c"]}),
                json!([{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}]),
                Some(json!({"baz": "qux", "foo": ["a", 2, "c"]})),
            ),
            (
                "A.9 testing a value: error",
                json!({"baz": "qux"}),
                json!([{"op": "test", "path": "/baz", "value": "bar"}]),
                None,
            ),
            (
                "A.10 adding a nested member object",
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}]),
                Some(json!({"foo": "bar", "child": {"grandchild": {}}})),
            ),
            (
                "A.12 adding to a nonexistent target",
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz/bat", "value": "qux"}]),
                None,
            ),
            (
                "A.14 ~ escape ordering",
                json!({"/": 9, "~1": 10}),
                json!([{"op": "test", "path": "/~01", "value": 10}]),
                Some(json!({"/": 9, "~1": 10})),
            ),
            (
                "A.15 comparing strings and numbers",
                json!({"/": 9, "~1": 10}),
                json!([{"op": "test", "path": "/~01", "value": "10"}]),
                None,
            ),
            (
                "A.16 adding an array value",
                json!({"foo": ["bar"]}),
                json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]),
                Some(json!({"foo": ["bar", ["abc", "def"]]})),
            ),
        ];
        for (name, doc, patch, want) in cases {
            let got = apply(&doc, &patch);
            match want {
                Some(want) => assert_eq!(got.as_ref().ok(), Some(&want), "{name}: {got:?}"),
                None => assert!(got.is_err(), "{name}: {got:?}"),
            }
        }
    }

    #[test]
    fn all_or_nothing_and_edge_cases() {
        let doc = json!({"a": [1, 2]});
        // The second operation fails: the first must not show.
        let patch =
            json!([{"op": "add", "path": "/b", "value": 1}, {"op": "remove", "path": "/zz"}]);
        assert!(apply(&doc, &patch).is_err());
        assert_eq!(doc, json!({"a": [1, 2]}));
        for bad_index in ["/a/01", "/a/-1", "/a/3", "/a/x"] {
            let patch = json!([{"op": "add", "path": bad_index, "value": 0}]);
            assert!(apply(&doc, &patch).is_err(), "{bad_index}");
        }
        let patch = json!([{"op": "add", "path": "/a/2", "value": 3}]);
        assert_eq!(apply(&doc, &patch).unwrap(), json!({"a": [1, 2, 3]}));
        let patch = json!([{"op": "move", "from": "/a", "path": "/a/0"}]);
        assert!(apply(&doc, &patch).is_err(), "into its own child");
        let patch = json!([{"op": "copy", "from": "/a", "path": "/c"}]);
        assert_eq!(
            apply(&doc, &patch).unwrap(),
            json!({"a": [1, 2], "c": [1, 2]})
        );
        let patch = json!([{"op": "replace", "path": "", "value": 5}]);
        assert_eq!(apply(&doc, &patch).unwrap(), json!(5));
        assert!(
            apply(&doc, &json!({"op": "add"}))
                .unwrap_err()
                .is_malformed()
        );
        assert!(
            apply(&doc, &json!([{"op": "frob", "path": "/a"}]))
                .unwrap_err()
                .is_malformed()
        );
        assert!(
            apply(&doc, &json!([{"op": "add", "path": "/b"}]))
                .unwrap_err()
                .is_malformed()
        );
        let many: Vec<Value> = (0..=MAX_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "/a", "value": [1, 2]}))
            .collect();
        assert!(
            apply(&doc, &Value::Array(many))
                .unwrap_err()
                .to_string()
                .contains("maximum operations")
        );
    }
}

//! YAML and JSON documents decoded with serde-saphyr into JSON values plus a line index.
//!
//! Manifests are decoded in two steps: the text becomes a generic JSON value here (so that
//! unknown fields and non-string labels can be reported by path), and only then a typed
//! object. The [`LineIndex`] remembers the line of every field path for diagnostics.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

/// A YAML node with the line it starts on.
type Node = Spanned<NodeValue>;

/// The shape of a YAML node, decoded through `deserialize_any`.
enum NodeValue {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_none<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<NodeValue, E> {
        Ok(NodeValue::Number(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<NodeValue, E> {
        i64::try_from(v)
            .map(|v| NodeValue::Number(v.into()))
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<NodeValue, E> {
        u64::try_from(v)
            .map(|v| NodeValue::Number(v.into()))
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeValue, E> {
        Number::from_f64(v)
            .map(NodeValue::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a finite number")))
    }
    fn visit_str<E>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<KeyString>()? {
            entries.push((key.0, map.next_value::<Node>()?));
        }
        Ok(NodeValue::Map(entries))
    }
}

/// A mapping key: JSON only has string keys, so scalars are taken as their text.
struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyString, E> {
                Ok(KeyString("null".to_string()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

/// The line (1-based) of every field path in a document, e.g. `spec.ports[0].port`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            path = parent_path(path)?;
        }
    }

    /// The lines below `prefix`, re-rooted so that `prefix` becomes the empty path.
    pub fn subtree(&self, prefix: &str) -> LineIndex {
        let lines = self
            .lines
            .iter()
            .filter_map(|(path, line)| {
                let rest = path.strip_prefix(prefix)?;
                let rest = match rest.chars().next() {
                    Some('.') => &rest[1..],
                    None | Some('[') => rest,
                    Some(_) if prefix.is_empty() => rest,
                    Some(_) => return None,
                };
                Some((rest.to_string(), *line))
            })
            .collect();
        LineIndex { lines }
    }

    /// Records a path's line, for documents that do not come from YAML text.
    pub fn insert(&mut self, path: String, line: usize) {
        self.lines.insert(path, line);
    }
}

/// The parent of a field path: `a.b[0].c` -> `a.b[0]` -> `a.b` -> `a` -> ``.
pub fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    // A bracketed key may itself contain dots: `labels[app.kubernetes.io/name]`.
    let cut = if path.ends_with(']') {
        path.rfind('[')
    } else {
        path.rfind(['.', '['])
    };
    Some(&path[..cut.unwrap_or(0)])
}

/// Appends a map key to a field path, bracketing keys that are not plain identifiers
/// (`metadata.labels[app.kubernetes.io/name]`), as Kubernetes' field paths do.
pub fn child_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key}]"),
    }
}

/// Appends a list index to a field path.
pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// One document of a YAML stream, or a whole JSON text.
#[derive(Debug, Clone)]
pub struct RawDocument {
    /// The document as JSON.
    pub value: Value,
    /// Line of each field path.
    pub lines: LineIndex,
    /// Line the document starts on.
    pub line: usize,
}

/// A syntax error in a YAML or JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Line of the error, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// Decodes every document of a YAML stream. JSON is YAML, so JSON texts decode too,
/// but [`parse_json`] gives better messages for them.
pub fn parse_yaml(text: &str) -> Result<Vec<RawDocument>, SyntaxError> {
    let nodes: Vec<Option<Node>> = serde_saphyr::from_multiple(text).map_err(|e| SyntaxError {
        line: e.location().map(|l| l.line() as usize).filter(|l| *l > 0),
        message: e.without_snippet().to_string(),
    })?;
    Ok(nodes
        .into_iter()
        .flatten()
        .filter(|node| !matches!(node.value, NodeValue::Null))
        .map(|node| {
            let line = node.referenced.line() as usize;
            let mut lines = LineIndex::default();
            let value = into_json(node, String::new(), &mut lines);
            RawDocument { value, lines, line }
        })
        .collect())
}

/// Decodes a JSON text. Lines of fields are not tracked; every path maps to line 1.
pub fn parse_json(text: &str) -> Result<RawDocument, SyntaxError> {
    let value: Value = serde_json::from_str(text).map_err(|e| SyntaxError {
        line: Some(e.line()),
        message: e.to_string(),
    })?;
    let mut lines = LineIndex::default();
    lines.insert(String::new(), 1);
    Ok(RawDocument {
        value,
        lines,
        line: 1,
    })
}

fn into_json(node: Node, path: String, lines: &mut LineIndex) -> Value {
    lines.insert(path.clone(), node.referenced.line() as usize);
    match node.value {
        NodeValue::Null => Value::Null,
        NodeValue::Bool(b) => Value::Bool(b),
        NodeValue::Number(n) => Value::Number(n),
        NodeValue::String(s) => Value::String(s),
        NodeValue::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| into_json(item, index_path(&path, i), lines))
                .collect(),
        ),
        NodeValue::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let child = child_path(&path, &key);
                map.insert(key, into_json(value, child, lines));
            }
            Value::Object(map)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn multi_document_yaml_keeps_lines_and_types() {
        let text = "a: 1\nb: \"1\"\nc: true\n---\n# comment\nlist:\n  - x: null\n  - z: 2.5\n";
        let docs = parse_yaml(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].value, json!({"a": 1, "b": "1", "c": true}));
        assert_eq!(docs[1].value, json!({"list": [{"x": null}, {"z": 2.5}]}));
        assert_eq!(docs[0].lines.line_of("b"), Some(2));
        assert_eq!(docs[1].lines.line_of("list[1].z"), Some(8));
        assert_eq!(docs[1].lines.line_of("list[1].z.missing"), Some(8));
    }

    #[test]
    fn empty_documents_are_skipped() {
        let docs = parse_yaml("---\n---\na: 1\n---\n").unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].line, 3);
    }

    #[test]
    fn anchors_and_aliases_expand() {
        let docs = parse_yaml("base: &b {x: 1}\ncopy: *b\n").unwrap();
        assert_eq!(docs[0].value, json!({"base": {"x": 1}, "copy": {"x": 1}}));
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let err = parse_yaml("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.line.is_some(), "{err:?}");
        let err = parse_yaml("a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("duplicate"), "{err:?}");
    }

    #[test]
    fn paths_bracket_non_identifier_keys() {
        assert_eq!(child_path("metadata.labels", "app"), "metadata.labels.app");
        assert_eq!(
            child_path("metadata.labels", "app.kubernetes.io/name"),
            "metadata.labels[app.kubernetes.io/name]"
        );
        assert_eq!(parent_path("a.b[0].c"), Some("a.b[0]"));
        assert_eq!(parent_path("a.b[0]"), Some("a.b"));
        assert_eq!(parent_path("a"), Some(""));
        assert_eq!(parent_path(""), None);
        assert_eq!(
            parent_path("metadata.labels[a.b/c]"),
            Some("metadata.labels")
        );
    }
}

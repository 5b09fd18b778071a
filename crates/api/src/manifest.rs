//! Loading manifests: files, directories and stdin; YAML streams, JSON and `List` kinds;
//! strict decoding that names the path of every unknown field, like the API server's
//! strict field validation.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::kinds::{self, KindInfo, ObjectKey, Resource};
use crate::yaml::{self, LineIndex, RawDocument, child_path, index_path};

/// Where a document came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file's path as given, or `-` for stdin.
    pub file: String,
    /// The line the document starts on (1-based).
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One decoded object and where it came from.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// File and line of the document.
    pub origin: Origin,
    /// The typed object.
    pub resource: Resource,
    /// Line of each field path inside the object.
    pub lines: LineIndex,
}

impl Manifest {
    /// File and line of a field path inside this object (the document's line if unknown).
    pub fn origin_of(&self, path: &str) -> Origin {
        Origin {
            file: self.origin.file.clone(),
            line: self.lines.line_of(path).unwrap_or(self.origin.line),
        }
    }

    /// The object's key, with namespaced kinds defaulting to `default`.
    pub fn key(&self) -> ObjectKey {
        ObjectKey::of(&self.resource, "default")
    }
}

/// Why a document could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// A file or directory could not be read.
    Io,
    /// The text is not valid YAML or JSON.
    Syntax,
    /// apiVersion or kind is missing, or names a kind Switchyard does not know.
    UnknownKind,
    /// A field that the kind does not have.
    UnknownField,
    /// A field whose value has the wrong type.
    InvalidType,
}

/// A document that could not be decoded, with its location.
#[derive(Debug, Clone)]
pub struct LoadError {
    /// What went wrong, broadly.
    pub kind: LoadErrorKind,
    /// File and line of the problem.
    pub origin: Origin,
    /// `Kind/name` of the object, when known.
    pub object: Option<String>,
    /// Field path of the problem, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Everything loaded from a set of sources: the objects, and every problem found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Decoded objects, in source order.
    pub manifests: Vec<Manifest>,
    /// Problems, in source order.
    pub errors: Vec<LoadError>,
}

impl Loaded {
    fn extend(&mut self, other: Loaded) {
        self.manifests.extend(other.manifests);
        self.errors.extend(other.errors);
    }
}

/// Loads every path: `-` reads `stdin`, a directory is walked recursively for `.yaml`,
/// `.yml` and `.json` files in name order, any other path is read as a file.
pub fn load_paths(paths: &[PathBuf], stdin: &mut dyn Read) -> Loaded {
    let mut loaded = Loaded::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match stdin.read_to_string(&mut text) {
                Ok(_) => loaded.extend(load_str("-", &text)),
                Err(e) => loaded.errors.push(io_error("-", &e)),
            }
        } else if path.is_dir() {
            match manifest_files(path) {
                Ok(files) => {
                    for file in files {
                        loaded.extend(load_file(&file));
                    }
                }
                Err(e) => loaded
                    .errors
                    .push(io_error(&path.display().to_string(), &e)),
            }
        } else {
            loaded.extend(load_file(path));
        }
    }
    loaded
}

fn load_file(path: &Path) -> Loaded {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&name, &text),
        Err(e) => Loaded {
            errors: vec![io_error(&name, &e)],
            ..Loaded::default()
        },
    }
}

fn io_error(file: &str, error: &std::io::Error) -> LoadError {
    LoadError {
        kind: LoadErrorKind::Io,
        origin: Origin {
            file: file.to_string(),
            line: 0,
        },
        object: None,
        field: None,
        message: format!("cannot read: {error}"),
        fix: "check that the path exists and is readable".to_string(),
    }
}

/// The manifest files under a directory, recursively, sorted by path.
fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Loads one text: JSON when the file name ends in `.json` or the text starts with `{`,
/// a YAML stream otherwise.
pub fn load_str(file: &str, text: &str) -> Loaded {
    let is_json = file.ends_with(".json") || text.trim_start().starts_with('{');
    let documents = if is_json {
        yaml::parse_json(text).map(|d| vec![d])
    } else {
        yaml::parse_yaml(text)
    };
    let mut loaded = Loaded::default();
    match documents {
        Ok(documents) => {
            for document in documents {
                decode_document(file, document, &mut loaded);
            }
        }
        Err(e) => loaded.errors.push(LoadError {
            kind: LoadErrorKind::Syntax,
            origin: Origin {
                file: file.to_string(),
                line: e.line.unwrap_or(1),
            },
            object: None,
            field: None,
            message: e.message,
            fix: if is_json {
                "fix the JSON syntax at this line".to_string()
            } else {
                "fix the YAML syntax at this line (indentation, quoting, or a duplicate key)"
                    .to_string()
            },
        }),
    }
    loaded
}

fn decode_document(file: &str, document: RawDocument, loaded: &mut Loaded) {
    let RawDocument { value, lines, line } = document;
    let origin = |path: &str| Origin {
        file: file.to_string(),
        line: lines.line_of(path).unwrap_or(line),
    };
    let error = |kind, path: &str, object: Option<String>, message: String, fix: &str| LoadError {
        kind,
        origin: origin(path),
        object,
        field: (!path.is_empty()).then(|| path.to_string()),
        message,
        fix: fix.to_string(),
    };

    let Value::Object(map) = &value else {
        loaded.errors.push(error(
            LoadErrorKind::Syntax,
            "",
            None,
            "a manifest must be a mapping with apiVersion, kind and metadata".to_string(),
            "write the object as a YAML mapping",
        ));
        return;
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version.is_empty() || kind.is_empty() {
        let missing = if kind.is_empty() {
            "kind"
        } else {
            "apiVersion"
        };
        loaded.errors.push(error(
            LoadErrorKind::UnknownKind,
            "",
            None,
            format!("Object '{missing}' is missing"),
            "set apiVersion and kind, e.g. `apiVersion: apps/v1` and `kind: Deployment`",
        ));
        return;
    }

    if kind == "List" || kind.ends_with("List") && kinds::lookup_kind(kind).is_none() {
        let Some(items) = map.get("items").and_then(Value::as_array) else {
            loaded.errors.push(error(
                LoadErrorKind::InvalidType,
                "items",
                Some(kind.to_string()),
                "a List needs an `items` array".to_string(),
                "put the objects under `items:`",
            ));
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let path = index_path("items", i);
            let item_lines = lines.subtree(&path);
            let item_line = lines.line_of(&path).unwrap_or(line);
            decode_document(
                file,
                RawDocument {
                    value: item.clone(),
                    lines: item_lines,
                    line: item_line,
                },
                loaded,
            );
        }
        return;
    }

    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    let object = Some(format!("{kind}/{name}"));
    let Some(info) = kinds::lookup(api_version, kind) else {
        let known = kinds::lookup_kind(kind).map(|k| k.api_version());
        let fix = match known {
            Some(v) => format!("use `apiVersion: {v}` for {kind}"),
            None => format!(
                "Switchyard knows these kinds: {}",
                kinds::KINDS
                    .iter()
                    .map(|k| k.kind)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        loaded.errors.push(error(
            LoadErrorKind::UnknownKind,
            "kind",
            object,
            format!("no matches for kind \"{kind}\" in version \"{api_version}\""),
            &fix,
        ));
        return;
    };

    match decode_strict(info, value.clone()) {
        Ok(resource) => loaded.manifests.push(Manifest {
            origin: origin(""),
            resource,
            lines,
        }),
        Err(problems) => {
            for problem in problems {
                let (kind, message, fix) = match problem {
                    Problem::Unknown(ref path) => (
                        LoadErrorKind::UnknownField,
                        format!("unknown field \"{path}\""),
                        format!(
                            "remove `{}` or fix its spelling; `switchyard crd` and the Kubernetes \
                             API reference list the fields of {}",
                            path.rsplit(['.', '[']).next().unwrap_or(path),
                            info.kind
                        ),
                    ),
                    Problem::Type(ref path, ref message) if is_label_value(path) => (
                        LoadErrorKind::InvalidType,
                        format!("{path}: label and annotation values must be strings: {message}"),
                        "quote the value, e.g. `version: \"1\"` or `enabled: \"true\"`".to_string(),
                    ),
                    Problem::Type(ref path, ref message) => (
                        LoadErrorKind::InvalidType,
                        format!("{path}: {message}"),
                        format!("give `{path}` a value of the type its field expects"),
                    ),
                };
                let path = match &problem {
                    Problem::Unknown(p) | Problem::Type(p, _) => p.clone(),
                };
                loaded
                    .errors
                    .push(error(kind, &path, object.clone(), message, &fix));
            }
        }
    }
}

fn is_label_value(path: &str) -> bool {
    yaml::parent_path(path).is_some_and(|p| p.ends_with("labels") || p.ends_with("annotations"))
}

/// A problem found by strict decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A field the kind does not have (its path).
    Unknown(String),
    /// A field of the wrong type (its path, and serde's message).
    Type(String, String),
}

impl Problem {
    /// The field path of the problem.
    pub fn field(&self) -> &str {
        match self {
            Problem::Unknown(path) | Problem::Type(path, _) => path,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unknown(path) => write!(f, "unknown field \"{path}\""),
            Problem::Type(path, message) => write!(f, "{path}: {message}"),
        }
    }
}

/// Decodes `value` as `info`'s kind and reports every field the typed object does not
/// keep: re-encoding the typed object and comparing keys catches unknown fields at any
/// depth, in k8s-openapi types and ours alike.
pub fn decode_strict(info: &KindInfo, mut value: Value) -> Result<Resource, Vec<Problem>> {
    if let Some(obj) = value.as_object_mut() {
        obj.insert("apiVersion".into(), Value::String(info.api_version()));
    }
    let resource = Resource::from_value(info, value.clone()).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        // serde reports a missing required field at its parent; name the field itself,
        // as the API server's `Required value` does.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            return vec![Problem::Type(
                child_path(&path, field),
                "Required value".into(),
            )];
        }
        vec![Problem::Type(path, message)]
    })?;
    let mut unknown = Vec::new();
    unknown_fields(&value, &resource.to_value(), "", &mut unknown);
    if unknown.is_empty() {
        Ok(resource)
    } else {
        Err(unknown.into_iter().map(Problem::Unknown).collect())
    }
}

fn unknown_fields(input: &Value, decoded: &Value, path: &str, out: &mut Vec<String>) {
    match (input, decoded) {
        (Value::Object(input), Value::Object(decoded)) => {
            for (key, value) in input {
                let child = child_path(path, key);
                match decoded.get(key) {
                    Some(kept) => unknown_fields(value, kept, &child, out),
                    // An explicit null is a field set to its default, not an unknown one.
                    None if value.is_null() => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(input), Value::Array(decoded)) => {
            for (i, (value, kept)) in input.iter().zip(decoded).enumerate() {
                unknown_fields(value, kept, &index_path(path, i), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Loaded {
        load_str("test.yaml", text)
    }

    #[test]
    fn unknown_fields_are_named_by_path_and_line() {
        let loaded = load(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {name: a, port: {number: 80}}
      - path: /b
        pathType: Prefix
        weight: 10
        backend:
          service: {name: b, port: {number: 80}}
",
        );
        assert!(loaded.manifests.is_empty());
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        let e = &loaded.errors[0];
        assert_eq!(e.kind, LoadErrorKind::UnknownField);
        assert_eq!(
            e.message,
            "unknown field \"spec.rules[0].http.paths[1].weight\""
        );
        assert_eq!(e.origin.line, 15);
        assert_eq!(e.object.as_deref(), Some("Ingress/web"));
    }

    #[test]
    fn every_unknown_field_is_reported() {
        let loaded = load(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a, labelz: {}}\nspec:\n  typo: 1\n  ports: [{port: 80, targetport: 8080}]\n",
        );
        let messages: Vec<_> = loaded.errors.iter().map(|e| e.message.clone()).collect();
        assert_eq!(
            messages,
            [
                "unknown field \"metadata.labelz\"",
                "unknown field \"spec.ports[0].targetport\"",
                "unknown field \"spec.typo\"",
            ]
        );
    }

    #[test]
    fn non_string_label_values_are_rejected() {
        let loaded = load(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels:\n    version: 1\n",
        );
        assert_eq!(loaded.errors.len(), 1);
        let e = &loaded.errors[0];
        assert_eq!(e.field.as_deref(), Some("metadata.labels.version"));
        assert!(e.message.contains("must be strings"), "{}", e.message);
        assert_eq!(e.origin.line, 6);
    }

    #[test]
    fn argo_rollouts_load_as_switchyard_rollouts() {
        let loaded = load(
            "apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: demo}
spec:
  replicas: 3
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec: {containers: [{name: demo, image: argoproj/rollouts-demo:blue}]}
  strategy:
    canary:
      steps:
      - setWeight: 20
      - pause: {}
      - setWeight: 40
      - pause: {duration: 10}
      - pause: {duration: 1h}
",
        );
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let Resource::Rollout(rollout) = &loaded.manifests[0].resource else {
            panic!("not a rollout");
        };
        assert_eq!(rollout.spec.replicas, Some(3));
        let steps = rollout
            .spec
            .strategy
            .canary
            .as_ref()
            .unwrap()
            .steps
            .as_ref()
            .unwrap();
        assert_eq!(steps.len(), 5);
        assert_eq!(loaded.manifests[0].resource.info().group, "switchyard.dev");
    }

    #[test]
    fn lists_are_flattened_with_item_lines() {
        let loaded = load(
            "apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: a}
- apiVersion: v1
  kind: Namespace
  metadata: {name: b}
  bogus: 1
",
        );
        assert_eq!(loaded.manifests.len(), 1);
        assert_eq!(loaded.manifests[0].origin.line, 4);
        assert_eq!(loaded.errors[0].message, "unknown field \"bogus\"");
        assert_eq!(loaded.errors[0].origin.line, 10);
    }

    #[test]
    fn missing_required_fields_are_named() {
        let loaded = load(
            "apiVersion: switchyard.dev/v1alpha1\nkind: Rollout\nmetadata: {name: a}\nstatus:\n  conditions:\n  - type: Ready\n",
        );
        let e = &loaded.errors[0];
        assert_eq!(
            e.field.as_deref(),
            Some("status.conditions[0].lastTransitionTime"),
            "{e:?}"
        );
        assert_eq!(
            e.message,
            "status.conditions[0].lastTransitionTime: Required value"
        );
        assert_eq!(e.origin.line, 6);
    }

    #[test]
    fn json_documents_load() {
        let loaded = load_str(
            "x.json",
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}"#,
        );
        assert_eq!(loaded.manifests.len(), 1, "{:?}", loaded.errors);
    }

    #[test]
    fn unknown_kinds_and_wrong_versions_say_what_to_use() {
        let loaded =
            load("apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: a}\n");
        assert_eq!(
            loaded.errors[0].message,
            "no matches for kind \"Deployment\" in version \"extensions/v1beta1\""
        );
        assert!(loaded.errors[0].fix.contains("apps/v1"));
    }

    #[test]
    fn type_errors_name_the_field() {
        let loaded = load(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n  replicas: three\n",
        );
        let e = &loaded.errors[0];
        assert_eq!(e.kind, LoadErrorKind::InvalidType);
        assert_eq!(e.field.as_deref(), Some("spec.replicas"));
        assert_eq!(e.origin.line, 5);
    }
}

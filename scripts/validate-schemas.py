#!/usr/bin/env python3
"""Validate the example manifests and Switchyard's CRDs against published schemas.

Usage: scripts/validate-schemas.py CRDS.yaml [--examples DIR] [--kubernetes-version V]

CRDS.yaml is the output of `switchyard crd` (a multi-document YAML stream).

1. Every CustomResourceDefinition in CRDS.yaml is validated, strictly, against the
   official apiextensions.k8s.io/v1 schema (kubernetes-validate).
2. Every document of a built-in kind in examples/**/*.yaml (any apiVersion outside
   switchyard.dev and argoproj.io) is validated, strictly, against the official
   Kubernetes JSON schema of that kind (kubernetes-validate), for Kubernetes 1.35 to
   match the k8s-openapi `v1_35` feature the Rust code is built with. Strict means an
   unknown field is an error, as with `kubectl apply --validate=strict`.
3. Every switchyard.dev/v1alpha1 and argoproj.io/v1alpha1 document in the examples is
   validated against the openAPIV3Schema of the matching CRD version from CRDS.yaml.
   argoproj.io documents are checked against the switchyard.dev CRD of the same kind
   and version (Switchyard loads Argo Rollouts manifests as its own kinds). The schema is
   read the way the API server reads it: `nullable` admits null,
   `x-kubernetes-int-or-string` admits an integer or a string, and a field that the
   schema does not declare is an error unless `x-kubernetes-preserve-unknown-fields`
   is set (strict field validation). `metadata` is validated as an ObjectMeta.

Prints one line per document, `ok   FILE:doc#N Kind/name` or `FAIL FILE:doc#N Kind/name`
followed by the errors, then `schema-validation: N passed, M failed`. Exits 1 when
anything failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any, Iterable

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as error:  # pragma: no cover - environment problem
    sys.exit(
        f"validate-schemas: {error}; install with "
        "`python3 -m pip install kubernetes-validate==1.37.0 pyyaml`"
    )

REPO = Path(__file__).resolve().parent.parent
CUSTOM_GROUPS = ("switchyard.dev", "argoproj.io")
SWITCHYARD_GROUP = "switchyard.dev"
ARGO_GROUP = "argoproj.io"


class Report:
    """Counts and prints results."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def ok(self, where: str, what: str) -> None:
        self.passed += 1
        print(f"ok   {where} {what}")

    def fail(self, where: str, what: str, errors: Iterable[str]) -> None:
        self.failed += 1
        print(f"FAIL {where} {what}")
        for error in errors:
            lines = str(error).splitlines() or [""]
            print(f"       {lines[0]}")
            for line in lines[1:]:
                print(f"         {line}")


def display(path: Path) -> str:
    """A path relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def load_documents(path: Path) -> list[tuple[int, Any]]:
    """The non-empty documents of a YAML stream, with their 1-based index in the stream."""
    with open(path, encoding="utf-8") as f:
        documents = list(yaml.safe_load_all(f))
    return [(i, doc) for i, doc in enumerate(documents, start=1) if doc is not None]


def describe(doc: Any) -> str:
    """`Kind/name` of a document, as far as it can be told."""
    if not isinstance(doc, dict):
        return "<not an object>"
    kind = doc.get("kind") or "<no kind>"
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return f"{kind}/{name or '<no name>'}"


def field_path(path: Iterable[Any]) -> str:
    """A jsonschema error path as a field path: `spec.ports[0].port`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def group_version(api_version: str) -> tuple[str, str]:
    """(group, version) of an apiVersion; the core group is ''."""
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


def check_type_meta(doc: Any) -> list[str]:
    """Problems with apiVersion and kind, which every object must have."""
    if not isinstance(doc, dict):
        return [f"document is a {type(doc).__name__}, not an object"]
    errors = []
    for field in ("apiVersion", "kind"):
        if not isinstance(doc.get(field), str) or not doc.get(field):
            errors.append(f"{field}: Required value: a non-empty string is required")
    return errors


def check_name(doc: dict) -> list[str]:
    """The API server requires a name (or generateName); the schemas do not."""
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        return ["metadata: Required value: an object with a name is required"]
    if not metadata.get("name") and not metadata.get("generateName"):
        return ["metadata.name: Required value: name or generateName is required"]
    return []


def validate_builtin(doc: dict, kube_version: str) -> list[str]:
    """Errors of a built-in kind against the official schema (strict).

    kubernetes-validate raises only the most relevant error of a document, so one
    error is reported per document.
    """
    try:
        kubernetes_validate.validate(doc, kube_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{field_path(e.path)}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [e.message]
    except kubernetes_validate.InvalidSchemaError as e:
        return [e.message]
    except kubernetes_validate.utils.VersionNotSupportedError as e:
        return [e.message]
    return []


def validate_object_meta(metadata: Any, kube_version: str) -> list[str]:
    """Errors of a custom object's metadata, checked as an ObjectMeta (strict).

    kubernetes-validate has no entry point for a bare definition, so the metadata is
    wrapped in a ConfigMap, whose only other fields are optional.
    """
    if not isinstance(metadata, dict):
        return []  # reported by check_name
    wrapper = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
    return validate_builtin(wrapper, kube_version)


def _as_types(value: Any) -> list[str]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def api_server_schema(schema: Any) -> Any:
    """An OpenAPI v3 (structural) CRD schema rewritten as plain JSON Schema with the
    semantics the API server gives it.

    - `nullable: true` admits null (JSON Schema knows no `nullable`);
    - `x-kubernetes-int-or-string: true` admits exactly an integer or a string;
    - an object without `x-kubernetes-preserve-unknown-fields` and without
      `additionalProperties` admits only its declared properties: the API server prunes
      other fields, and strict field validation reports them as unknown;
    - `x-kubernetes-embedded-resource: true` objects implicitly have apiVersion, kind
      and metadata.
    """
    if not isinstance(schema, dict):
        return schema
    s = dict(schema)
    for key in ("properties", "patternProperties", "definitions"):
        if isinstance(s.get(key), dict):
            s[key] = {name: api_server_schema(child) for name, child in s[key].items()}
    for key in ("additionalProperties", "additionalItems", "not"):
        if isinstance(s.get(key), dict):
            s[key] = api_server_schema(s[key])
    if isinstance(s.get("items"), dict):
        s["items"] = api_server_schema(s["items"])
    elif isinstance(s.get("items"), list):
        s["items"] = [api_server_schema(child) for child in s["items"]]
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(s.get(key), list):
            s[key] = [api_server_schema(child) for child in s[key]]

    nullable = s.get("nullable") is True
    types = _as_types(s.get("type"))
    if s.get("x-kubernetes-int-or-string") is True and not types:
        types = ["integer", "string"]
    if types:
        if nullable and "null" not in types:
            types.append("null")
        s["type"] = types[0] if len(types) == 1 else types
    if nullable and isinstance(s.get("enum"), list) and None not in s["enum"]:
        s["enum"] = [*s["enum"], None]

    if "object" in types:
        if s.get("x-kubernetes-embedded-resource") is True:
            props = dict(s.get("properties") or {})
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            props.setdefault("metadata", {"type": "object"})
            s["properties"] = props
        if (
            s.get("x-kubernetes-preserve-unknown-fields") is not True
            and "additionalProperties" not in s
        ):
            s["additionalProperties"] = False
    return s


class CustomSchemas:
    """openAPIV3Schemas of served CRD versions, by (group, version, kind)."""

    def __init__(self) -> None:
        self.schemas: dict[tuple[str, str, str], Any] = {}

    def add(self, crd: dict) -> list[str]:
        """Registers the versions of a CRD; returns problems that prevent it."""
        spec = crd.get("spec") or {}
        group = spec.get("group")
        kind = (spec.get("names") or {}).get("kind")
        if not group or not kind:
            return ["spec.group and spec.names.kind are required"]
        errors = []
        for i, version in enumerate(spec.get("versions") or []):
            name = version.get("name")
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema is None:
                errors.append(f"spec.versions[{i}].schema.openAPIV3Schema: Required value")
                continue
            if version.get("served") is False:
                continue
            try:
                jsonschema.Draft4Validator.check_schema(schema)
            except jsonschema.SchemaError as e:
                errors.append(
                    f"spec.versions[{i}].schema.openAPIV3Schema.{field_path(e.path)}: "
                    f"not a valid JSON schema: {e.message}"
                )
                continue
            self.schemas[(group, name, kind)] = schema
        return errors

    def find(self, api_version: str, kind: str) -> tuple[str, Any] | None:
        """The CRD name and schema for a document's apiVersion and kind."""
        group, version = group_version(api_version)
        candidates = [group]
        if group == ARGO_GROUP:
            candidates.append(SWITCHYARD_GROUP)
        for candidate in candidates:
            schema = self.schemas.get((candidate, version, kind))
            if schema is not None:
                return f"{kind} {candidate}/{version}", schema
        return None


def validate_custom(
    doc: dict, schemas: CustomSchemas, kube_version: str
) -> list[str]:
    """Errors of a switchyard.dev or argoproj.io document against its CRD schema."""
    found = schemas.find(doc["apiVersion"], doc["kind"])
    if found is None:
        return [
            f"no CustomResourceDefinition serves {doc['kind']} in {doc['apiVersion']}"
        ]
    _, schema = found
    schema = copy.deepcopy(schema)
    props = schema.get("properties")
    if isinstance(props, dict):
        # The API server validates the root metadata as ObjectMeta, whatever the CRD
        # says (it may only restrict name); do the same, separately.
        props["metadata"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        # apiVersion and kind are implicit at the root of every custom resource schema.
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
    schema = api_server_schema(schema)
    validator = jsonschema.Draft4Validator(schema)
    errors = [
        f"{field_path(e.absolute_path)}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
    ]
    errors.extend(validate_object_meta(doc.get("metadata"), kube_version))
    return errors


def validate_crds(path: Path, report: Report, kube_version: str) -> CustomSchemas:
    """Validates the CRD stream and collects the schemas it defines."""
    schemas = CustomSchemas()
    where = display(path)
    try:
        documents = load_documents(path)
    except (OSError, yaml.YAMLError) as e:
        report.fail(where, "<CRDs>", [f"cannot read CRDs: {e}"])
        return schemas
    if not documents:
        report.fail(where, "<CRDs>", ["no CustomResourceDefinition found"])
        return schemas
    for index, doc in documents:
        here = f"{where}:doc#{index}"
        what = describe(doc)
        errors = check_type_meta(doc)
        if not errors and (
            doc["apiVersion"] != "apiextensions.k8s.io/v1"
            or doc["kind"] != "CustomResourceDefinition"
        ):
            errors = [
                f"expected apiextensions.k8s.io/v1 CustomResourceDefinition, "
                f"got {doc['apiVersion']} {doc['kind']}"
            ]
        if not errors:
            errors = check_name(doc) + validate_builtin(doc, kube_version)
        if not errors:
            errors = schemas.add(doc)
        if errors:
            report.fail(here, what, errors)
        else:
            report.ok(here, what)
    return schemas


def example_files(examples: Path) -> list[Path]:
    files = {p for pattern in ("*.yaml", "*.yml") for p in examples.rglob(pattern)}
    return sorted(p for p in files if p.is_file())


def validate_examples(
    examples: Path, schemas: CustomSchemas, report: Report, kube_version: str
) -> None:
    files = example_files(examples)
    if not files:
        report.fail(display(examples), "<examples>", ["no *.yaml files found"])
        return
    for path in files:
        where = display(path)
        try:
            documents = load_documents(path)
        except (OSError, yaml.YAMLError) as e:
            report.fail(where, "<file>", [f"cannot parse: {e}"])
            continue
        for index, doc in documents:
            here = f"{where}:doc#{index}"
            errors = check_type_meta(doc)
            if not errors:
                group, _ = group_version(doc["apiVersion"])
                errors = check_name(doc)
                if group in CUSTOM_GROUPS:
                    errors += validate_custom(doc, schemas, kube_version)
                else:
                    errors += validate_builtin(doc, kube_version)
            if errors:
                report.fail(here, describe(doc), errors)
            else:
                report.ok(here, describe(doc))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description="Validate examples/ and Switchyard's CRDs against published schemas."
    )
    parser.add_argument("crds", type=Path, help="output of `switchyard crd`")
    parser.add_argument(
        "--examples",
        type=Path,
        default=REPO / "examples",
        help="directory searched recursively for *.yaml (default: %(default)s)",
    )
    parser.add_argument(
        "--kubernetes-version",
        default="1.35.0",
        help="Kubernetes schema version; matches k8s-openapi's v1_35 (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    report = Report()
    schemas = validate_crds(args.crds, report, args.kubernetes_version)
    validate_examples(args.examples, schemas, report, args.kubernetes_version)
    print(f"schema-validation: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

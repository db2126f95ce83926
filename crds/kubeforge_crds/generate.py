"""Writes the CRD manifests (``crds/manifests``) and the CRD reference (``docs/reference/crds.md``)
from the pydantic models, or checks that the committed copies are current.

Pydantic emits JSON Schema (draft 2020-12); the apiserver wants a *structural* OpenAPI v3.0
schema: no ``$ref``, a ``type`` on every node, no ``anyOf`` with types except int-or-string,
boolean ``exclusiveMinimum``, no ``title``/``examples``. No maintained library does this
conversion for pydantic v2, so :func:`structural` does it here, by hand.

Usage::

    python -m kubeforge_crds.generate           # write
    python -m kubeforge_crds.generate --check   # exit 1 if anything is stale
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from kubeforge_crds import ALL_KINDS, DRIFTMONITOR, GROUP, KINDS, KindInfo
from kubeforge_crds.contracts.drift import GROUND_TRUTH_SUBRESOURCE
from kubeforge_crds.health import health_lua
from kubeforge_crds.platform import PlatformConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST_DIR = REPO_ROOT / "crds" / "manifests"
RBAC_DIR = REPO_ROOT / "crds" / "rbac"
REFERENCE_DOC = REPO_ROOT / "docs" / "reference" / "crds.md"
CHART_DIR = REPO_ROOT / "charts" / "kubeforge"
# Argo CD health checks, one health.lua per kind in Argo CD's resource_customizations layout;
# the argocd-cm snippet that installs them is generated from these files
HEALTH_DIR = CHART_DIR / "argocd"
ARGOCD_CM = REPO_ROOT / "examples" / "gitops" / "argocd-cm-kubeforge-health.yaml"

_DROP_KEYS = {"title", "examples"}
_PASS_KEYS = {
    "type",
    "description",
    "default",
    "enum",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "required",
    "properties",
    "items",
    "additionalProperties",
    "nullable",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "anyOf",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minProperties",
    "maxProperties",
}


class SchemaError(ValueError):
    """The models produced a schema the apiserver would not accept as structural."""


def structural(node: dict[str, Any], defs: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Turn one pydantic JSON-schema node into a structural OpenAPI v3 node."""
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}  # the referencing site's description/default win
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise SchemaError(f"{path or '<root>'}: unions other than X | None are not structural")
        inner = branches[0]
        if "$ref" in inner:
            inner = {**defs[inner["$ref"].rsplit("/", 1)[-1]]}
        node = {**inner, **node}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("default", 0) is None:
        del node["default"]
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if key in node and not isinstance(node[key], bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            node[bound] = node[key]
            node[key] = True

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key not in _PASS_KEYS:
            raise SchemaError(f"{path or '<root>'}: schema keyword {key!r} has no CRD equivalent")
        if key == "properties":
            out[key] = {
                name: structural(sub, defs, f"{path}.{name}") for name, sub in value.items()
            }
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = structural(value, defs, f"{path}[]")
        else:
            out[key] = value
    if "description" in out:
        out["description"] = " ".join(out["description"].split())
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        raise SchemaError(f"{path or '<root>'}: no type")
    if out.get("type") == "object" and "properties" in out and "additionalProperties" in out:
        out.pop("additionalProperties")
    # type and description first, then the rest in a stable order, for readable diffs
    head = [k for k in ("type", "description") if k in out]
    return {k: out[k] for k in head + sorted(k for k in out if k not in head)}


def model_schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return structural(raw, defs)


def build_crd(kind: KindInfo) -> dict[str, Any]:
    """The CustomResourceDefinition of ``kind``.

    Long on purpose: one literal manifest around the generated schemas."""
    spec = model_schema(kind.spec_model)
    status = model_schema(kind.status_model)
    status["description"] = status.get("description", "").strip()
    spec["description"] = spec.get("description", "").strip()
    if kind.immutable_spec:
        rule = {
            "rule": "self == oldSelf",
            "message": f"spec is immutable; create a new {kind.kind} instead",
        }
        spec["x-kubernetes-validations"] = [rule, *spec.get("x-kubernetes-validations", [])]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {
                "app.kubernetes.io/name": "kubeforge",
                "app.kubernetes.io/part-of": "kubeforge",
                "app.kubernetes.io/component": "crd",
            },
        },
        "spec": {
            "group": kind.group,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": list(kind.categories),
            },
            "scope": "Namespaced" if kind.namespaced else "Cluster",
            "versions": [
                {
                    "name": kind.version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": kind.columns(),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": kind.description,
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "APIVersion defines the versioned schema of "
                                    "this representation of an object.",
                                },
                                "kind": {
                                    "type": "string",
                                    "description": "Kind is a string value representing the "
                                    "REST resource this object represents.",
                                },
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                            "required": ["spec"],
                            "x-kubernetes-validations": kind.name_rule.cel_rules(),
                        }
                    },
                }
            ],
        },
    }


def dump_yaml(doc: dict[str, Any]) -> str:
    header = "# Generated by `make generate` (python -m kubeforge_crds.generate). Do not edit.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True)


def manifest_path(kind: KindInfo) -> Path:
    return MANIFEST_DIR / f"{kind.group}_{kind.plural}.yaml"


# --- the CRD reference --------------------------------------------------------------------------


def _type_of(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "quantity (int or string)"
    t = node.get("type", "")
    if t == "array":
        return f"[]{_type_of(node.get('items', {}))}"
    if t == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type_of(node['additionalProperties'])}"
    return str(t)


def _constraints(node: dict[str, Any]) -> str:
    parts: list[str] = []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    lo, hi = node.get("minimum"), node.get("maximum")
    if lo is not None or hi is not None:
        lo_op = ">" if node.get("exclusiveMinimum") else "≥"
        hi_op = "<" if node.get("exclusiveMaximum") else "≤"
        bounds = [
            f"{lo_op} {lo}" if lo is not None else "",
            f"{hi_op} {hi}" if hi is not None else "",
        ]
        parts.append(" and ".join(b for b in bounds if b))
    for key, label in (
        ("maxLength", "max length"),
        ("maxItems", "max items"),
        ("minItems", "min items"),
    ):
        if key in node:
            parts.append(f"{label} {node[key]}")
    if "pattern" in node and "enum" not in node and not node.get("x-kubernetes-int-or-string"):
        parts.append(f"pattern `{node['pattern']}`")
    for rule in node.get("x-kubernetes-validations", []):
        parts.append(f"rule: {rule['message']}")
    return "; ".join(parts).replace("|", "\\|")


def _rows(node: dict[str, Any], path: str, required: bool) -> list[str]:
    default = node.get("default")
    default_text = f"`{json.dumps(default)}`" if default is not None and default != {} else ""
    desc = " ".join(node.get("description", "").split()).replace("|", "\\|")
    rows = [
        f"| `{path}` | {_type_of(node)} | {'yes' if required else ''} | {default_text} "
        f"| {desc} | {_constraints(node)} |"
    ]
    target = node.get("items", node) if node.get("type") == "array" else node
    suffix = "[]" if node.get("type") == "array" else ""
    req = set(target.get("required", []))
    for name, sub in target.get("properties", {}).items():
        rows += _rows(sub, f"{path}{suffix}.{name}", name in req)
    return rows


def build_reference() -> str:
    lines = [
        "# CRD reference (kubeforge.io/v1alpha1)",
        "",
        "Generated from the pydantic models in `crds/kubeforge_crds` by `make generate`; do not "
        "edit. `kubectl explain <kind>.spec` prints the same descriptions.",
        "",
    ]
    for kind in ALL_KINDS:
        crd = build_crd(kind)
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]["properties"]
        lines += [
            f"## {kind.kind}",
            "",
            f"{kind.description}",
            "",
            *([] if kind.namespaced else ["Cluster-scoped.", ""]),
            f"`kubectl get {kind.plural}` (short name `{', '.join(kind.short_names)}`, category "
            f"`{kind.categories[0]}`). Printer columns: "
            + ", ".join(c["name"] for c in version["additionalPrinterColumns"])
            + ".",
            "",
            "| field | type | required | default | description | validation |",
            "|---|---|---|---|---|---|",
            *_rows(schema["spec"], "spec", True),
            *_rows(schema["status"], "status", False),
            "",
        ]
    return "\n".join(lines)


def build_user_roles() -> list[dict[str, Any]]:
    """ClusterRoles that Kubernetes' aggregation adds to the built-in ``admin``, ``edit`` and
    ``view`` roles, so that whoever may edit a namespace may manage kubeforge's kinds there (and
    the REST API, acting as that user, may too), and whoever may view it may read its Kueue
    queues."""
    plurals = [k.plural for k in KINDS]
    labels = {"app.kubernetes.io/part-of": "kubeforge"}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": "kubeforge-edit",
                "labels": {
                    **labels,
                    "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                    "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                },
            },
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "resources": plurals,
                    "verbs": [
                        "create",
                        "delete",
                        "deletecollection",
                        "get",
                        "list",
                        "patch",
                        "update",
                        "watch",
                    ],
                },
                *QUEUE_READING,  # edit is not view's aggregate: said again here
                # a subresource no apiserver serves, reviewed by the REST API before it passes
                # labels on to the monitor's drift service: who may send a model's ground truth
                {
                    "apiGroups": [GROUP],
                    "resources": [f"{DRIFTMONITOR.plural}/{GROUND_TRUTH_SUBRESOURCE}"],
                    "verbs": ["create"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": "kubeforge-view",
                "labels": {**labels, "rbac.authorization.k8s.io/aggregate-to-view": "true"},
            },
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "resources": [*plurals, *(f"{p}/status" for p in plurals)],
                    "verbs": ["get", "list", "watch"],
                },
                *QUEUE_READING,
            ],
        },
    ]


# whoever may use a namespace may see its Kueue queues and where their workloads wait (the
# REST API's quota view reads them as the caller)
QUEUE_READING: list[dict[str, Any]] = [
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["localqueues"], "verbs": ["get", "list"]},
    {
        "apiGroups": ["visibility.kueue.x-k8s.io"],
        "resources": ["localqueues/pendingworkloads"],
        "verbs": ["get"],
    },
]


def expected_files() -> dict[Path, str]:
    files = {manifest_path(k): dump_yaml(build_crd(k)) for k in ALL_KINDS}
    files[RBAC_DIR / "user-roles.yaml"] = "---\n".join(dump_yaml(r) for r in build_user_roles())
    files[REFERENCE_DOC] = build_reference()
    # the chart ships the very same files: Helm installs crds/ before anything else (and never
    # upgrades or deletes them, see docs/operations.md); the user roles are ordinary templates
    for kind in ALL_KINDS:
        files[CHART_DIR / "crds" / manifest_path(kind).name] = files[manifest_path(kind)]
    files[CHART_DIR / "templates" / "user-roles.yaml"] = files[RBAC_DIR / "user-roles.yaml"]
    for kind in ALL_KINDS:
        files[health_path(kind)] = health_lua(GROUP, kind.kind, kind.health)
    files[ARGOCD_CM] = build_argocd_health_config()
    files[CHART_DIR / "values.schema.json"] = build_values_schema()
    return files


def build_values_schema() -> str:
    """The chart's values.schema.json (written by hand) with its ``platform`` value's schema
    generated from ``PlatformConfig``, so that Helm rejects a bad catalog or hardware profile at
    install time rather than the operator at run time."""
    path = CHART_DIR / "values.schema.json"
    schema = json.loads(path.read_text())
    platform = model_schema(PlatformConfig)
    platform["description"] = (
        "The notebook image catalog, the hardware profiles and where CPU workloads run."
    )
    schema["properties"]["platform"] = platform
    return json.dumps(schema, indent=2) + "\n"


def health_path(kind: KindInfo) -> Path:
    return HEALTH_DIR / GROUP / kind.kind / "health.lua"


def build_argocd_health_config() -> str:
    """A patch for Argo CD's argocd-cm ConfigMap with the health checks of the four kinds."""
    data = {
        f"resource.customizations.health.{GROUP}_{kind.kind}": health_lua(
            GROUP, kind.kind, kind.health
        )
        for kind in ALL_KINDS
    }
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "argocd-cm",
            "namespace": "argocd",
            "labels": {"app.kubernetes.io/part-of": "argocd"},
        },
        "data": data,
    }
    header = (
        "# Generated by `make generate` from the kinds' phase tables (kubeforge_crds.health),\n"
        "# as charts/kubeforge/argocd/*/*/health.lua are.\n"
        "# Merge into Argo CD's argocd-cm (kubectl patch or your Argo CD kustomization).\n"
    )
    return header + yaml.dump(doc, Dumper=_LiteralDumper, sort_keys=False, width=100)


class _LiteralDumper(yaml.SafeDumper):
    """Writes multi-line strings (the Lua scripts) as literal blocks, as a person would."""


_LiteralDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected_files().items():
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        if args.check:
            stale.append(path)
            diff = difflib.unified_diff(
                current.splitlines(), text.splitlines(), str(path), "generated", lineterm="", n=1
            )
            sys.stderr.write("\n".join(list(diff)[:40]) + "\n")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    if stale:
        rel = ", ".join(str(p.relative_to(REPO_ROOT)) for p in stale)
        sys.stderr.write(f"stale generated files: {rel}\nrun `make generate` and commit them\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The CRD generator: committed manifests are current, and the schema conversion is structural."""

from __future__ import annotations

from typing import Any

import pytest

from kubeforge_crds import ALL_KINDS
from kubeforge_crds.generate import SchemaError, build_crd, expected_files, structural


def test_committed_generated_files_are_current() -> None:
    stale = [str(p) for p, text in expected_files().items() if p.read_text() != text]
    assert not stale, f"stale: {stale}; run `make generate`"


def _walk(node: dict[str, Any], path: str = "") -> list[str]:
    problems = []
    if "$ref" in node or "title" in node or "const" in node:
        problems.append(f"{path}: non-structural keyword")
    if "type" not in node and not node.get("x-kubernetes-int-or-string"):
        problems.append(f"{path}: no type")
    for name, sub in node.get("properties", {}).items():
        problems += _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        problems += _walk(node["items"], f"{path}[]")
    return problems


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.kind)
def test_crd_schema_is_structural_and_complete(kind: Any) -> None:
    crd = build_crd(kind)
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    assert _walk(schema) == []
    assert version["subresources"] == {"status": {}}
    names = crd["spec"]["names"]
    assert names["categories"] == ["kubeforge" if kind.namespaced else "kubeforge-platform"]
    assert crd["spec"]["scope"] == ("Namespaced" if kind.namespaced else "Cluster")
    assert names["shortNames"] == list(kind.short_names)
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:2] == ["Ready", "Phase"]
    assert columns[-1] == "Age"

    # every spec field carries a description, so kubectl explain has something to say
    def undocumented(node: dict[str, Any], path: str) -> list[str]:
        out = [] if node.get("description") else [path]
        for name, sub in node.get("properties", {}).items():
            out += undocumented(sub, f"{path}.{name}")
        return out

    assert undocumented(schema["properties"]["spec"], "spec") == []


def test_modelserver_has_a_traffic_split_column() -> None:
    ms = next(k for k in ALL_KINDS if k.kind == "ModelServer")
    cols = {
        c["name"]: c["jsonPath"]
        for c in build_crd(ms)["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert cols["Traffic"] == ".status.trafficSplit"


def test_optional_becomes_plain_type_and_defaults_of_none_vanish() -> None:
    node = structural(
        {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "X"}, {}
    )
    assert node == {"type": "string"}


def test_refs_are_inlined_with_the_sites_description() -> None:
    defs = {"Sub": {"type": "object", "description": "inner", "properties": {}}}
    node = structural({"$ref": "#/$defs/Sub", "description": "outer"}, defs)
    assert node["description"] == "outer"
    assert node["type"] == "object"


def test_numeric_exclusive_bounds_become_openapi_booleans() -> None:
    node = structural({"type": "number", "exclusiveMinimum": 0}, {})
    assert node == {"type": "number", "minimum": 0, "exclusiveMinimum": True}


def test_real_unions_are_refused() -> None:
    with pytest.raises(SchemaError, match="unions"):
        structural({"anyOf": [{"type": "string"}, {"type": "integer"}]}, {}, "spec.x")


def test_unknown_keywords_are_refused() -> None:
    with pytest.raises(SchemaError, match="oneOf"):
        structural({"type": "object", "oneOf": []}, {}, "spec")

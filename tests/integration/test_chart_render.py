"""The Helm chart rendered, without a cluster: lint and template, the values schema, the
generated CRDs and roles, restricted pods and no wildcard rule, the alert rules through promtool,
and checkov's scan. Helm, promtool and checkov are the real programs; nothing here needs the
cluster, so these run beside the cluster's tests (tests/integration/test_chart.py installs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeforge_crds import ALL_KINDS
from tests.integration.conftest import REPO, helm_binary, run_helm

pytestmark = pytest.mark.no_cluster  # helm, promtool and checkov only

CHART = REPO / "charts" / "kubeforge"
RELEASE, NAMESPACE = "kubeforge", "kubeforge-system"
ALL_ON = [
    "--set",
    "monitoring.serviceMonitor.enabled=true",
    "--set",
    "monitoring.prometheusRule.enabled=true",
    "--set",
    "monitoring.grafanaDashboard.enabled=true",
    "--set",
    "kserve.servingRuntime.enabled=true",
    "--set-json",
    'api.gpuPrices={"NVIDIA-A100-SXM4-80GB": 3.2, "default": 1.5}',
]
INGRESS = [
    "--set",
    "api.ingress.enabled=true",
    "--set",
    "api.ingress.host=kubeforge.example.com",
    "--set",
    "api.ingress.tlsSecretName=kubeforge-tls",
]
HTTP_ROUTE = [
    "--set",
    "api.httpRoute.enabled=true",
    "--set",
    "api.httpRoute.parentRefs[0].name=public",
    "--set",
    "api.httpRoute.parentRefs[0].namespace=gateways",
    "--set",
    "api.httpRoute.hostnames[0]=kubeforge.example.com",
]


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


def render_text(helm: str, *values: str) -> str:
    return run_helm(helm, "template", RELEASE, str(CHART), "-n", NAMESPACE, *values).stdout


def render(helm: str, *values: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render_text(helm, *values)) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    hits = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(hits) == 1, f"{kind} {name}: {len(hits)} found"
    return hits[0]


def test_lint_and_template(helm: str) -> None:
    run_helm(helm, "lint", "--strict", str(CHART), *ALL_ON)
    default = render(helm)
    kinds = sorted({d["kind"] for d in default})
    assert kinds == sorted(
        {
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        }
    )
    everything = render(helm, *ALL_ON, *INGRESS, *HTTP_ROUTE)
    for kind in ("ServiceMonitor", "PrometheusRule", "Ingress", "HTTPRoute"):
        find(everything, kind)
    # one runtime per image: scikit-learn from the slim runtime image, LLMs from the ML image
    sklearn = find(everything, "ClusterServingRuntime", "kubeforge")
    llm = find(everything, "ClusterServingRuntime", "kubeforge-llm")
    assert [f["name"] for f in sklearn["spec"]["supportedModelFormats"]] == ["sklearn"]
    assert [f["name"] for f in llm["spec"]["supportedModelFormats"]] == ["transformers", "peft"]
    assert "kubeforge-trainer" in llm["spec"]["containers"][0]["image"]
    assert "kubeforge-runtime" in sklearn["spec"]["containers"][0]["image"]
    for runtime in (sklearn, llm):  # a read-only root: torch and transformers write to /tmp
        assert {"name": "tmp", "emptyDir": {}} in runtime["spec"]["volumes"]
    dashboard = find(everything, "ConfigMap", f"{RELEASE}-dashboard")
    panels = json.loads(dashboard["data"]["kubeforge.json"])["panels"]
    assert {p["title"] for p in panels} >= {"Operator leader", "Rollout decisions"}


def test_ingress_serves_the_api_and_portal_at_its_host(helm: str) -> None:
    docs = render(helm, *INGRESS, "--set", "api.ingress.className=nginx")
    ingress = find(docs, "Ingress", f"{RELEASE}-api")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"hosts": ["kubeforge.example.com"], "secretName": "kubeforge-tls"}
    ]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "kubeforge.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = find(docs, "Service", f"{RELEASE}-api")
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    # no API, no Ingress; no Ingress by default
    assert not [
        d for d in render(helm, *INGRESS, "--set", "api.enabled=false") if d["kind"] == "Ingress"
    ]
    assert not [d for d in render(helm) if d["kind"] == "Ingress"]


def test_http_route_attaches_the_api_to_a_gateway(helm: str) -> None:
    docs = render(helm, *HTTP_ROUTE)
    route = find(docs, "HTTPRoute", f"{RELEASE}-api")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
    assert route["spec"]["hostnames"] == ["kubeforge.example.com"]
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    service = find(docs, "Service", f"{RELEASE}-api")
    assert rule["backendRefs"] == [
        {"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}
    ]
    assert not [d for d in render(helm) if d["kind"] == "HTTPRoute"]


def test_chart_crds_and_user_roles_are_the_generated_ones() -> None:
    manifests = sorted((REPO / "crds" / "manifests").glob("*.yaml"))
    assert [p.name for p in manifests] == sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert len(manifests) == len(ALL_KINDS)
    for path in manifests:
        assert (CHART / "crds" / path.name).read_bytes() == path.read_bytes(), path.name
    roles = (REPO / "crds" / "rbac" / "user-roles.yaml").read_bytes()
    assert (CHART / "templates" / "user-roles.yaml").read_bytes() == roles


def test_kueue_flavors_and_priority_tiers_are_the_platforms_values(helm: str) -> None:
    kueue = {
        "resourceFlavors": [
            {
                "name": "a100",
                "nodeLabels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            },
            {"name": "cpu"},
        ],
        "priorityClasses": [
            {"name": "interactive", "value": 1000, "description": "someone waits: 'now'"},
            {"name": "preemptible", "value": -10},
            {"name": "1e3", "value": 1_000_000_000},  # a name YAML would read as a number
        ],
    }
    docs = render(helm, "--set-json", f"kueue={json.dumps(kueue)}")
    a100 = find(docs, "ResourceFlavor", "a100")
    assert a100["apiVersion"] == "kueue.x-k8s.io/v1beta2"
    assert a100["spec"] == {k: v for k, v in kueue["resourceFlavors"][0].items() if k != "name"}
    assert find(docs, "ResourceFlavor", "cpu")["spec"] == {}  # any node
    tier = find(docs, "WorkloadPriorityClass", "interactive")
    assert (tier["value"], tier["description"]) == (1000, "someone waits: 'now'")
    assert "description" not in find(docs, "WorkloadPriorityClass", "preemptible")
    assert find(docs, "WorkloadPriorityClass", "1e3")["value"] == 1_000_000_000  # not 1e+09
    assert not [d for d in render(helm) if d["apiVersion"].startswith("kueue.")]  # none: none
    twice = {"priorityClasses": [{"name": "a", "value": 1}, {"name": "a", "value": 2}]}
    proc = run_helm(
        helm, "template", RELEASE, str(CHART), "--set-json", f"kueue={json.dumps(twice)}",
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert 'kueue.priorityClasses: the name "a" is given twice' in proc.stderr


def test_values_schema_names_the_bad_value(helm: str) -> None:
    cases = {
        ("--set", "kueue.priorityClasses[0].name=urgent"): "/kueue/priorityClasses/0",
        ("--set", "kueue.resourceFlavors[0].name=A100"): "/kueue/resourceFlavors/0/name",
        ("--set", "operator.replica=3"): "replica",
        ("--set", "admissionPolicy.allowedRegistries[0]=ghcr.io"): "allowedRegistries",
        ("--set", "image.digest=latest"): "digest",
        ("--set", "monitoring.prometheusRule.operatorDownFor=five"): "operatorDownFor",
        ("--set", "platform.hardwareProfiles[0].description=x"): "name",
        ("--set", "api.ingress.enabled=true"): "/api/ingress/host",
        ("--set", "api.ingress.host=https://kubeforge.example.com"): "/api/ingress/host",
        ("--set", "api.httpRoute.enabled=true"): "/api/httpRoute/parentRefs",
        (
            "--set",
            "api.httpRoute.hostnames[0]=kubeforge.example.com:443",
        ): "/api/httpRoute/hostnames/0",
    }
    for args, field in cases.items():
        proc = run_helm(helm, "template", RELEASE, str(CHART), *args, check=False)
        assert proc.returncode != 0, args
        assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
        assert field in proc.stderr, proc.stderr


def test_every_pod_is_restricted_and_no_rule_is_a_wildcard(helm: str) -> None:
    docs = render(helm, *ALL_ON)
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"] is True
            assert c["resources"]["limits"]["memory"]
            assert c["livenessProbe"]
            assert c["readinessProbe"]
    for role in (d for d in docs if d["kind"] in ("ClusterRole", "Role")):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)


def test_api_role_is_the_local_control_planes(helm: str) -> None:
    """The API's ClusterRole in the chart grants what the local control plane's kubeforge-api user
    has, which tests/integration/test_api.py proves is enough."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("localcluster", REPO / "hack" / "localcluster.py")
    assert spec
    assert spec.loader
    localcluster = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("localcluster", localcluster)  # its dataclasses look themselves up
    spec.loader.exec_module(localcluster)
    local = next(r for r in localcluster.API_RBAC if r["kind"] == "ClusterRole")
    chart = find(render(helm), "ClusterRole", f"{RELEASE}-api")
    assert grants(chart["rules"]) == grants(local["rules"])


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_promtool_checks_and_tests_the_chart_rules(helm: str, tmp_path: Path) -> None:
    rule = find(render(helm, *ALL_ON), "PrometheusRule")
    rules = tmp_path / "kubeforge-rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is needed"
    check = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 7 rules found" in check.stdout  # 4 alerts, 2 prices, 1 cost
    tests = tmp_path / "rules-test.yaml"
    spec = yaml.safe_load((REPO / "tests" / "promtool" / "kubeforge-rules-test.yaml").read_text())
    spec["rule_files"] = [str(rules)]
    tests.write_text(yaml.safe_dump(spec))
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


CHECKOV = REPO / ".cache" / "tools" / "checkov-3.3.30" / "bin" / "checkov"


def checkov(rendered: Path) -> dict[str, Any]:
    assert CHECKOV.exists(), "checkov is installed by `make venv` (or `make chart-scan`)"
    proc = subprocess.run(
        [
            str(CHECKOV),
            "-f",
            str(rendered),
            "--framework",
            "kubernetes",
            "-o",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        timeout=300,
    )
    report = json.loads(proc.stdout)
    return report["results"]


def test_checkov_scan_has_no_finding_left_unexplained(helm: str, tmp_path: Path) -> None:
    """checkov on the rendered chart (everything on, image pinned by digest as docs/security.md
    tells platform teams to do): nothing fails; what is skipped is skipped in the chart with a
    reason and explained in docs/security.md."""
    rendered = tmp_path / "rendered.yaml"
    pinned = ("--set", "image.digest=sha256:" + "0" * 64)
    rendered.write_text(render_text(helm, *ALL_ON[:6], *INGRESS, *pinned))
    results = checkov(rendered)
    failed = sorted({(c["check_id"], c["resource"]) for c in results["failed_checks"]})
    assert failed == [], failed
    skipped = {c["check_id"] for c in results["skipped_checks"]}
    assert skipped == {"CKV_K8S_11", "CKV_K8S_38"}
    assert len(results["passed_checks"]) > 200
    security = (REPO / "docs" / "security.md").read_text()
    for check_id in skipped | {"CKV_K8S_43", "CKV_K8S_15"}:
        assert check_id in security, f"{check_id} is not explained in docs/security.md"
    # by tag (the default): only the digest findings, which the docs explain
    rendered.write_text(render_text(helm))
    by_tag = {c["check_id"] for c in checkov(rendered)["failed_checks"]}
    assert by_tag == {"CKV_K8S_43", "CKV_K8S_15"}


# --- on the local control plane --------------------------------------------------------------

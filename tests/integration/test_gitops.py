"""examples/gitops against the real apiserver: the Argo CD Application and ApplicationSet are
valid against Argo CD's own CRDs (installed into the local control plane from Argo CD's Go
module), the Application's Helm values pass the chart's values schema, and every team folder the
ApplicationSet would sync is admitted as it stands (server-side dry run: schemas, CEL rules)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import yaml

from tests.integration.conftest import REPO, Cluster
from tests.integration.test_chart import CHART, helm, run_helm  # noqa: F401 - fixture

GITOPS = REPO / "examples" / "gitops"


def dry_run(cluster: Cluster, namespace: str, path: Path) -> None:
    cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-f", str(path))


def test_application_and_applicationset_are_valid_argo_cd_objects(cluster: Cluster) -> None:
    cluster.kubectl("create", "namespace", "argocd", check=False)
    for name in ("application.yaml", "applicationset.yaml"):
        dry_run(cluster, "argocd", GITOPS / name)
    app = yaml.safe_load((GITOPS / "application.yaml").read_text())
    assert (REPO / app["spec"]["source"]["path"] / "Chart.yaml").exists()
    appset = yaml.safe_load((GITOPS / "applicationset.yaml").read_text())
    pattern = appset["spec"]["generators"][0]["git"]["directories"][0]["path"]
    assert sorted(p.name for p in REPO.glob(pattern)) == ["team-a", "team-b"]


def test_the_applications_helm_values_pass_the_chart_schema(helm: str, tmp_path: Path) -> None:  # noqa: F811
    app = yaml.safe_load((GITOPS / "application.yaml").read_text())
    values = tmp_path / "values.json"
    values.write_text(json.dumps(app["spec"]["source"]["helm"]["valuesObject"]))
    out = run_helm(helm, "template", "kubeforge", str(CHART), "-f", str(values)).stdout
    assert "registry.example.com/ml/" in out


def test_every_team_folder_is_admitted(cluster: Cluster) -> None:
    for team in sorted((GITOPS / "teams").iterdir()):
        ns = f"kf-test-{team.name}-{uuid.uuid4().hex[:6]}"
        cluster.kubectl("create", "namespace", ns)
        try:
            for manifest in sorted(team.glob("*.yaml")):
                dry_run(cluster, ns, manifest)
        finally:
            cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_argo_cd_health_config_carries_each_kinds_check() -> None:
    cm = yaml.safe_load((GITOPS / "argocd-cm-kubeforge-health.yaml").read_text())
    keys = sorted(cm["data"])
    assert keys == [
        f"resource.customizations.health.kubeforge.io_{k}"
        for k in ("DriftMonitor", "FineTuneJob", "ModelServer", "Team", "Workbench")
    ]
    for key, script in cm["data"].items():
        kind = key.rsplit("_", 1)[1]
        health = CHART / "argocd" / "kubeforge.io" / kind / "health.lua"
        assert script == health.read_text()

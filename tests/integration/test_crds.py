"""The CRDs in a real kube-apiserver: installed, examples accepted, invalid objects rejected at
admission with the field named, kubectl explain and printer columns working."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from kubeforge_crds import ALL_KINDS
from tests.cases import INVALID, LOCAL_EXAMPLES, Invalid, load_examples
from tests.integration.conftest import Cluster

THIRD_PARTY = [
    "inferenceservices.serving.kserve.io",
    "servingruntimes.serving.kserve.io",
    "clusterqueues.kueue.x-k8s.io",
    "localqueues.kueue.x-k8s.io",
    "workloads.kueue.x-k8s.io",
    "trainjobs.trainer.kubeflow.org",
    "clustertrainingruntimes.trainer.kubeflow.org",
    "jobsets.jobset.x-k8s.io",
    "servicemonitors.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
]


def _create(cluster: Cluster, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Create ``obj`` in ``namespace`` (cluster-wide for a Team)."""
    kind = next(k for k in ALL_KINDS if k.kind == obj["kind"])
    api = client.CustomObjectsApi(cluster.api)
    if not kind.namespaced:
        return dict(
            api.create_cluster_custom_object(
                kind.group, kind.version, kind.plural, obj, field_validation="Strict"
            )
        )
    result: dict[str, Any] = api.create_namespaced_custom_object(
        kind.group, kind.version, namespace, kind.plural, obj, field_validation="Strict"
    )
    return result


def test_our_crds_are_established(cluster: Cluster) -> None:
    names = [k.crd_name for k in ALL_KINDS]
    out = cluster.kubectl("get", "crd", *names, "-o", "json").stdout
    for crd in json.loads(out)["items"]:
        conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conds["Established"] == "True", crd["metadata"]["name"]


@pytest.mark.usefixtures("local_cluster")
def test_third_party_crds_are_installed(cluster: Cluster) -> None:
    out = json.loads(cluster.kubectl("get", "crd", *THIRD_PARTY, "-o", "json").stdout)
    assert sorted(i["metadata"]["name"] for i in out["items"]) == sorted(THIRD_PARTY)


def test_third_party_schema_is_enforced(cluster: Cluster, namespace: str) -> None:
    """The real KServe schema rejects what it should, so our generated children get checked."""
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "bad-isvc", "namespace": namespace},
        "spec": {"predictor": {"minReplicas": "three"}},
    }
    proc = cluster.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(isvc), check=False)
    assert proc.returncode != 0
    assert "spec.predictor.minReplicas" in proc.stderr


@pytest.mark.parametrize(
    ("obj", "suffix"),
    [(o, "") for o in load_examples()] + [(o, "-local") for o in load_examples(LOCAL_EXAMPLES)],
    ids=lambda o: o["metadata"]["name"] if isinstance(o, dict) else o,
)
def test_examples_are_accepted(
    cluster: Cluster, namespace: str, obj: dict[str, Any], suffix: str
) -> None:
    # examples/local reuses the names of examples/ (one namespace here)
    renamed = {**obj, "metadata": {**obj["metadata"], "name": obj["metadata"]["name"] + suffix}}
    created = _create(cluster, namespace, renamed)
    assert created["metadata"]["uid"]


def test_defaults_are_applied_by_the_apiserver(cluster: Cluster, namespace: str) -> None:
    created = _create(
        cluster,
        namespace,
        {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "ModelServer",
            "metadata": {"name": "defaults"},
            "spec": {"model": {"uri": "s3://models/m"}},
        },
    )
    rollout = created["spec"]["rollout"]
    assert rollout["steps"] == [10, 25, 50, 100]
    assert rollout["onFailure"] == "rollback"
    assert [m["name"] for m in rollout["metrics"]] == ["error-rate", "latency-p95"]


@pytest.mark.parametrize("case", INVALID, ids=lambda c: f"{c.kind}-{c.id}")
def test_invalid_objects_are_rejected_at_admission(
    cluster: Cluster, namespace: str, case: Invalid
) -> None:
    with pytest.raises(client.ApiException) as err:
        _create(cluster, namespace, case.object(f"invalid-{case.id}"))
    assert err.value.status in (400, 422), err.value.body
    body = json.loads(err.value.body)
    causes = body.get("details", {}).get("causes", [])
    text = " ".join([body["message"], *(f"{c.get('field')}: {c.get('message')}" for c in causes)])
    assert case.field in text, text
    if case.message:
        assert case.message in text, text


def test_kubectl_explain_prints_field_descriptions(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "workbench.spec").stdout
    assert "The desired notebook environment." in out
    assert "Idle culling." in out
    out = cluster.kubectl("explain", "finetunejob.spec.method.lora.r").stdout
    assert "Rank of the update matrices." in out


def test_short_names_category_and_columns(cluster: Cluster, namespace: str) -> None:
    _create(
        cluster,
        namespace,
        {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "Workbench",
            "metadata": {"name": "columns"},
            "spec": {"image": "jupyter/minimal"},
        },
    )
    out = cluster.kubectl("get", "kubeforge", "-n", namespace).stdout
    assert "workbench.kubeforge.io/columns" in out
    out = cluster.kubectl("get", "wb", "-n", namespace).stdout
    header = out.splitlines()[0].split()
    assert header[:3] == ["NAME", "READY", "PHASE"]
    assert "GPUS" in header
    for short in ("ftj", "ms", "dm"):
        cluster.kubectl("get", short, "-n", namespace)
    out = cluster.kubectl(
        "get",
        "crd",
        "modelservers.kubeforge.io",
        "-o",
        "jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}",
    ).stdout
    assert "Traffic" in out.split()

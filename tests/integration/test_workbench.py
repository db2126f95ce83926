"""Workbench against the real apiserver, scheduler and controller manager: a notebook pod with a
bound home volume, GPUs on GPU nodes, the scheduler's reason when none fits, stop and start that
keep the data, image changes that roll the pod, and garbage collection on delete."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.cases import example
from tests.integration.conftest import OPERATOR_USER, Cluster, JupyterServer, wait_until

pytestmark = [pytest.mark.usefixtures("operator", "local_cluster")]


def _get(cluster: Cluster, ns: str, what: str, check: bool = True) -> dict[str, Any] | None:
    proc = cluster.kubectl("get", what, "-n", ns, "-o", "json", check=check)
    return dict(json.loads(proc.stdout)) if proc.returncode == 0 else None


def _apply(cluster: Cluster, ns: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(obj))


def _patch(cluster: Cluster, ns: str, name: str, patch: str) -> None:
    cluster.kubectl("patch", "workbench", name, "-n", ns, "--type=merge", "-p", patch)


def _apply_ready(cluster: Cluster, ns: str, obj: dict[str, Any]) -> None:
    """Apply a Workbench and wait until it is Ready."""
    _apply(cluster, ns, obj)
    cluster.kubectl(
        "wait",
        "-n",
        ns,
        "--for=condition=Ready",
        "--timeout=90s",
        f"workbench/{obj['metadata']['name']}",
    )


def _conditions(wb: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in wb.get("status", {}).get("conditions", [])}


def _pending_as(
    cluster: Cluster,
    ns: str,
    name: str,
    scheduled: tuple[str, str],
    says: str,
    ready: tuple[str, str],
) -> dict[str, Any]:
    """Wait until the Workbench's Scheduled condition is ``scheduled`` (status, reason); check
    that its message has ``says``, that Ready is ``ready`` and the phase Pending. Returns it."""

    def seen() -> dict[str, Any] | None:
        wb = _get(cluster, ns, f"workbench/{name}") or {}
        cond = _conditions(wb).get("Scheduled") or {}
        return wb if (cond.get("status"), cond.get("reason")) == scheduled else None

    wb: dict[str, Any] = wait_until(seen, 90, what=f"Scheduled {scheduled} on {name}")
    assert says in _conditions(wb)["Scheduled"]["message"]
    ready_cond = _conditions(wb)["Ready"]
    assert (ready_cond["status"], ready_cond["reason"]) == ready
    assert wb["status"]["phase"] == "Pending"
    return wb


def _phase(cluster: Cluster, ns: str, name: str) -> str | None:
    wb = _get(cluster, ns, f"workbench/{name}")
    return (wb or {}).get("status", {}).get("phase")


def test_ready_workbench_has_a_pod_a_bound_home_and_a_service(
    cluster: Cluster, namespace: str
) -> None:
    _apply_ready(cluster, namespace, example("Workbench", "notebook"))
    pvc = _get(cluster, namespace, "pvc/notebook-home")
    assert pvc is not None
    assert pvc["status"]["phase"] == "Bound"
    pod = _get(cluster, namespace, "pod/notebook-0")
    assert pod is not None
    assert pod["spec"]["nodeName"].startswith("kwok-cpu-")
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "notebook-home"
    svc = _get(cluster, namespace, "service/notebook")
    assert svc is not None
    assert svc["spec"]["ports"][0]["targetPort"] == 8888
    policy = _get(cluster, namespace, "networkpolicy/notebook")
    assert policy is not None
    assert policy["spec"]["podSelector"]["matchLabels"] == {"kubeforge.io/workbench": "notebook"}
    wb = _get(cluster, namespace, "workbench/notebook")
    assert wb is not None
    assert wb["status"]["phase"] == "Running"
    assert wb["status"]["url"] == f"http://notebook.{namespace}.svc/"


def test_gpu_workbench_lands_on_a_gpu_node_and_reports_its_gpus(
    cluster: Cluster, namespace: str
) -> None:
    _apply(
        cluster,
        namespace,
        example("Workbench", "notebook")
        | {
            "metadata": {"name": "gpu"},
            "spec": {"image": "jupyter:1", "resources": {"accelerator": {"count": 2}}},
        },
    )
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "--timeout=90s", "workbench/gpu"
    )
    pod = _get(cluster, namespace, "pod/gpu-0")
    assert pod is not None
    assert pod["spec"]["nodeName"].startswith("kwok-gpu-")
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    wb = _get(cluster, namespace, "workbench/gpu")
    assert wb is not None
    assert wb["status"]["gpus"] == 2


def test_a_home_volume_not_bound_yet_is_waited_for_not_reported_as_a_failure(
    cluster: Cluster, namespace: str
) -> None:
    """A StorageClass that binds Immediately but whose provisioner is not running: the pod waits
    on its claim, in the scheduler's own words (the text the operator recognises is checked here
    against the real kube-scheduler); the Workbench says it waits, Ready Unknown, no Warning. (It
    turns False after two minutes: the unit tests cover that.)"""
    storage_class = f"kf-unprovisioned-{namespace}"
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": storage_class},
                "provisioner": "example.com/not-running",
                "volumeBindingMode": "Immediate",
            }
        ),
    )
    try:
        _apply(
            cluster,
            namespace,
            {
                "apiVersion": "kubeforge.io/v1alpha1",
                "kind": "Workbench",
                "metadata": {"name": "unbound"},
                "spec": {"image": "jupyter:1", "storage": {"storageClassName": storage_class}},
            },
        )

        waiting = ("Unknown", "WaitingForVolume")
        unbound = "unbound immediate PersistentVolumeClaims"
        _pending_as(cluster, namespace, "unbound", waiting, unbound, ready=waiting)
        events = _get(cluster, namespace, "events")
        warnings = [
            e
            for e in (events or {}).get("items", [])
            if e["involvedObject"].get("name") == "unbound"
            and e["involvedObject"].get("kind") == "Workbench"
            and e["type"] == "Warning"
        ]
        assert warnings == []
    finally:
        cluster.kubectl("delete", "workbench", "unbound", "-n", namespace, "--wait=false")
        cluster.kubectl("delete", "storageclass", storage_class, "--wait=false", check=False)


def test_more_gpus_than_any_node_has_reports_the_schedulers_reason(
    cluster: Cluster, namespace: str
) -> None:
    _apply(
        cluster,
        namespace,
        {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "Workbench",
            "metadata": {"name": "greedy"},
            "spec": {"image": "jupyter:1", "resources": {"accelerator": {"count": 16}}},
        },
    )

    unschedulable = ("False", "Unschedulable")
    wb = _pending_as(
        cluster, namespace, "greedy", unschedulable, "Insufficient nvidia.com/gpu", unschedulable
    )
    assert wb["status"]["gpus"] == 0


def test_stop_and_start_keep_the_home_volume(cluster: Cluster, namespace: str) -> None:
    _apply_ready(
        cluster, namespace, example("Workbench", "notebook") | {"metadata": {"name": "stopper"}}
    )
    pvc = _get(cluster, namespace, "pvc/stopper-home")
    assert pvc is not None
    uid = pvc["metadata"]["uid"]

    _patch(cluster, namespace, "stopper", '{"spec":{"stopped":true}}')
    wait_until(
        lambda: _phase(cluster, namespace, "stopper") == "Stopped", 90, what="the Workbench to stop"
    )
    assert _get(cluster, namespace, "pod/stopper-0", check=False) is None
    # deleted, not scaled to zero (Kueue may keep a scaled-down StatefulSet's quota)
    assert _get(cluster, namespace, "statefulset/stopper", check=False) is None
    kept = _get(cluster, namespace, "pvc/stopper-home")
    assert kept is not None
    assert kept["metadata"]["uid"] == uid

    _patch(cluster, namespace, "stopper", '{"spec":{"stopped":false}}')
    wait_until(
        lambda: _phase(cluster, namespace, "stopper") == "Running",
        90,
        what="the Workbench to run again",
    )
    again = _get(cluster, namespace, "pvc/stopper-home")
    assert again is not None
    assert again["metadata"]["uid"] == uid


def test_changing_the_image_rolls_the_pod(cluster: Cluster, namespace: str) -> None:
    _apply_ready(
        cluster, namespace, example("Workbench", "notebook") | {"metadata": {"name": "roller"}}
    )
    _patch(
        cluster,
        namespace,
        "roller",
        '{"spec":{"image":"quay.io/jupyter/scipy-notebook:2025-10-20"}}',
    )

    def rolled() -> bool:
        pod = _get(cluster, namespace, "pod/roller-0", check=False)
        return bool(
            pod
            and pod["spec"]["containers"][0]["image"].endswith("scipy-notebook:2025-10-20")
            and pod["status"].get("phase") == "Running"
        )

    wait_until(rolled, 120, what="the pod to run the new image")


def test_deleting_the_workbench_removes_its_children(cluster: Cluster, namespace: str) -> None:
    _apply_ready(
        cluster, namespace, example("Workbench", "notebook") | {"metadata": {"name": "doomed"}}
    )
    cluster.kubectl(
        "delete", "workbench", "doomed", "-n", namespace, "--wait=true", "--timeout=60s"
    )
    for what in ("pvc/doomed-home", "statefulset/doomed", "service/doomed", "networkpolicy/doomed"):
        wait_until(
            lambda w=what: _get(cluster, namespace, w, check=False) is None,
            90,
            what=f"{what} to be garbage-collected",
        )


def test_unknown_catalog_image_is_reported_on_the_field(cluster: Cluster, namespace: str) -> None:
    _apply(
        cluster,
        namespace,
        {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "Workbench",
            "metadata": {"name": "catalog"},
            "spec": {"catalogImage": "no-such-image"},
        },
    )

    def rejected() -> dict[str, Any] | None:
        cond = _conditions(_get(cluster, namespace, "workbench/catalog") or {}).get("Ready")
        return cond if cond and cond["reason"] == "UnknownCatalogImage" else None

    cond = wait_until(rejected, 60, what="Ready=False UnknownCatalogImage")
    assert cond["status"] == "False"
    assert (
        "spec.catalogImage: 'no-such-image' is not in the notebook image catalog" in cond["message"]
    )
    assert _get(cluster, namespace, "statefulset/catalog", check=False) is None


def test_an_idle_workbench_is_culled_and_an_unknown_activity_never_is(
    cluster: Cluster, namespace: str, jupyter: JupyterServer
) -> None:
    idle = example("Workbench", "notebook") | {"metadata": {"name": "idle"}}
    idle["spec"] = {**idle["spec"], "culling": {"idleTimeout": "1m"}}
    blind = example("Workbench", "notebook") | {"metadata": {"name": "blind"}}
    blind["spec"] = {
        **blind["spec"],
        "culling": {"idleTimeout": "1m", "probePath": "/no-such-endpoint"},
    }
    _apply_ready(cluster, namespace, idle)
    _apply_ready(cluster, namespace, blind)
    jupyter.touch()  # real activity on the real server, after the pods became ready

    def culled() -> dict[str, Any] | None:
        wb = _get(cluster, namespace, "workbench/idle")
        return wb if wb and wb["status"].get("phase") == "Stopped" else None

    wb = wait_until(culled, 150, interval=2, what="the idle Workbench to be culled")
    assert "kubeforge.io/culled-at" in wb["metadata"]["annotations"]
    cond = _conditions(wb)["Culled"]
    assert (cond["status"], cond["reason"]) == ("True", "IdleTimeout")
    # the activity recorded is the real server's, to the second
    reported = str(jupyter.status()["last_activity"])
    assert wb["status"]["lastActivity"] == reported[:19] + "Z"
    assert _get(cluster, namespace, "pod/idle-0", check=False) is None
    assert _get(cluster, namespace, "pvc/idle-home") is not None
    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
    assert any(
        e["reason"] == "Culled" and e["involvedObject"]["name"] == "idle" for e in events["items"]
    )

    # the Workbench whose activity cannot be read is as old and still runs
    other = _get(cluster, namespace, "workbench/blind")
    assert other is not None
    assert other["status"]["phase"] == "Running"
    cond = _conditions(other)["Culled"]
    assert (cond["status"], cond["reason"]) == ("False", "ActivityUnknown")
    assert "404" in cond["message"]

    # removing the annotation starts it again, with the same home volume
    cluster.kubectl("annotate", "workbench", "idle", "-n", namespace, "kubeforge.io/culled-at-")
    wait_until(
        lambda: _phase(cluster, namespace, "idle") == "Running",
        60,
        what="the culled Workbench to start again",
    )
    restarted = _get(cluster, namespace, "workbench/idle")
    assert restarted is not None
    assert _conditions(restarted)["Culled"]["reason"] == "Active"
    cluster.kubectl("delete", "workbench", "idle", "blind", "-n", namespace)


def test_the_operator_writes_nothing_while_nothing_changes(
    cluster: Cluster, namespace: str
) -> None:
    _apply_ready(
        cluster, namespace, example("Workbench", "notebook") | {"metadata": {"name": "calm"}}
    )
    time.sleep(6)  # let the last status write of the start-up land
    offset = cluster.audit_offset()
    time.sleep(16)  # more than three resyncs (every 5 s in the tests)
    assert cluster.writes_since(offset, OPERATOR_USER, namespace) == []
    # while a change is written at once: stop it, and the writes are the ones that stopping needs
    offset = cluster.audit_offset()
    _patch(cluster, namespace, "calm", '{"spec":{"stopped":true}}')
    wait_until(lambda: _phase(cluster, namespace, "calm") == "Stopped", 60, what="stopped")
    writes = cluster.writes_since(offset, OPERATOR_USER, namespace)
    assert "delete statefulsets/calm" in writes
    assert "patch workbenches/status/calm" in writes
    assert not any("persistentvolumeclaims" in w for w in writes)
    # and a stopped Workbench's passes write nothing either (the StatefulSet is read, not
    # deleted again)
    time.sleep(3)
    offset = cluster.audit_offset()
    time.sleep(11)  # two resyncs
    assert cluster.writes_since(offset, OPERATOR_USER, namespace) == []


def _ready_condition(cluster: Cluster, ns: str, name: str, reason: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        cond = _conditions(_get(cluster, ns, f"workbench/{name}") or {}).get("Ready")
        return cond if cond and cond["reason"] == reason else None

    return dict(wait_until(found, 60, what=f"Ready reason {reason} on {name}"))


def test_catalog_image_and_hardware_profile(cluster: Cluster, namespace: str) -> None:
    _apply_ready(
        cluster,
        namespace,
        {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "Workbench",
            "metadata": {"name": "profiled"},
            "spec": {"catalogImage": "minimal", "resources": {"accelerator": {"profile": "a100"}}},
        },
    )
    pod = _get(cluster, namespace, "pod/profiled-0")
    assert pod is not None
    assert pod["spec"]["containers"][0]["image"] == "quay.io/jupyter/minimal-notebook:2025-10-20"
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["spec"]["nodeName"].startswith("kwok-gpu-")


@pytest.mark.parametrize(
    ("accelerator", "reason", "message"),
    [
        (
            {"profile": "a100", "count": 6},
            "OutsideHardwareProfile",
            "spec.resources.accelerator.count: 6 is outside what hardware profile 'a100' allows "
            "(1 to 4 nvidia.com/gpu)",
        ),
        (
            {"profile": "tpu-v5"},
            "UnknownHardwareProfile",
            "spec.resources.accelerator.profile: 'tpu-v5' is not a hardware profile (known: a100)",
        ),
    ],
    ids=["too-many-for-profile", "unknown-profile"],
)
def test_bad_profile_requests_are_reported_on_the_field(
    cluster: Cluster, namespace: str, accelerator: dict[str, Any], reason: str, message: str
) -> None:
    name = f"bad-{reason.lower()}"
    _apply(
        cluster,
        namespace,
        {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "Workbench",
            "metadata": {"name": name},
            "spec": {"image": "jupyter:1", "resources": {"accelerator": accelerator}},
        },
    )
    cond = _ready_condition(cluster, namespace, name, reason)
    assert cond["status"] == "False"
    assert cond["message"] == message
    assert _get(cluster, namespace, f"statefulset/{name}", check=False) is None


def test_a_missing_secret_holds_the_workbench_until_it_exists(
    cluster: Cluster, namespace: str
) -> None:
    _apply(
        cluster,
        namespace,
        example("Workbench", "notebook")
        | {
            "metadata": {"name": "connected"},
            "spec": {
                "image": "jupyter:1",
                "dataConnections": [{"name": "s3", "secretName": "team-bucket"}],
            },
        },
    )
    cond = _ready_condition(cluster, namespace, "connected", "SecretNotFound")
    assert cond["message"] == "spec.dataConnections[0].secretName: Secret 'team-bucket' not found"
    assert _get(cluster, namespace, "statefulset/connected", check=False) is None
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "team-bucket",
        "-n",
        namespace,
        "--from-literal=AWS_ACCESS_KEY_ID=placeholder",
    )
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "--timeout=60s", "workbench/connected"
    )
    pod = _get(cluster, namespace, "pod/connected-0")
    assert pod is not None
    assert pod["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "team-bucket"}}]

"""Quota enforced by Kueue's real controller (built from its module, on the real node):
Workbenches over a team's GPU quota wait with their place in the queue and Kueue's reason, and
run when a stopped one gives its GPUs back; a queue that does not exist and a request no quota
can ever hold are said, not waited on; a FineTuneJob preempted by a higher-priority one saves a
checkpoint, waits, and resumes from it to the same end as an uninterrupted run; a FineTuneJob on
two nodes is a Kubeflow Trainer TrainJob, admitted as one gang, that trains with torchrun across
two pods and registers its model."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.cases import REPO
from tests.e2e.conftest import (
    KEEP,
    call_api,
    chart_part,
    condition,
    finetunejob,
    get,
    node_control,
    training_volume,
    wait_for_condition,
)
from tests.integration.conftest import LOCALCLUSTER, Cluster, wait_until

from kubeforge_labs.gateway import ON_REAL_NODE

KUEUE = "kueue.x-k8s.io/v1beta2"
FLAVOR = "kf-e2e-a100"
GPUS = 2


@pytest.fixture(scope="module")
def kueue(cluster: Cluster, kubeforge: str) -> Iterator[None]:
    """Kueue's controller (localcluster.py kueue up) for this module's tests only: its pod
    webhook would refuse queued pods anywhere once its server is gone."""
    subprocess.run([*LOCALCLUSTER, "kueue", "up"], check=True, timeout=600)
    yield
    if not KEEP:
        subprocess.run([*LOCALCLUSTER, "kueue", "down"], check=True, timeout=600)


def queue_objects(
    ns: str,
    flavor: str,
    node_labels: dict[str, str],
    tolerations: list[dict[str, str]],
    quota: list[tuple[str, str]],
    local_queue: str,
    **spec: Any,
) -> list[dict[str, Any]]:
    """A ResourceFlavor, a ClusterQueue named after the namespace (only it may use it; no
    cohort: nothing to borrow) with ``quota`` in that flavor, and the namespace's LocalQueue."""
    return [
        {
            "apiVersion": KUEUE,
            "kind": "ResourceFlavor",
            "metadata": {"name": flavor},
            "spec": {"nodeLabels": node_labels, "tolerations": tolerations},
        },
        {
            "apiVersion": KUEUE,
            "kind": "ClusterQueue",
            "metadata": {"name": ns},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "resourceGroups": [
                    {
                        "coveredResources": [r for r, _ in quota],
                        "flavors": [
                            {
                                "name": flavor,
                                "resources": [{"name": r, "nominalQuota": q} for r, q in quota],
                            }
                        ],
                    }
                ],
            }
            | spec,
        },
        {
            "apiVersion": KUEUE,
            "kind": "LocalQueue",
            "metadata": {"name": local_queue, "namespace": ns},
            "spec": {"clusterQueue": ns},
        },
    ]


def apply_all(cluster: Cluster, items: list[dict[str, Any]]) -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": items}
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(listed))


def team_status(cluster: Cluster, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "team", name, "-o", "json", check=False)
    return dict(json.loads(out.stdout).get("status") or {}) if out.returncode == 0 else {}


def quota_condition(cluster: Cluster, name: str) -> dict[str, Any]:
    conditions = team_status(cluster, name).get("conditions") or []
    return next((c for c in conditions if c["type"] == "QuotaReady"), {})


def team(name: str, flavor: str, gpus: int, cohort: str, **gpu_limits: str) -> dict[str, Any]:
    """A Team with ``gpus`` A100s (and CPU and memory for them) of ``flavor`` in ``cohort``,
    LocalQueue ``gpu``, one member."""
    quota = [("cpu", "16"), ("memory", "64Gi"), ("nvidia.com/gpu", str(gpus))]
    resources = [{"name": r, "nominal": q} for r, q in quota]
    resources[-1] |= gpu_limits
    return {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "Team",
        "metadata": {"name": name},
        "spec": {
            "members": [{"kind": "User", "name": f"alice@{name}.example.com"}],
            "quota": {"cohort": cohort, "flavors": [{"name": flavor, "resources": resources}]},
            "queueName": "gpu",
        },
    }


@pytest.fixture
def team_queue(cluster: Cluster, kueue: None, e2e_namespace: str) -> Iterator[str]:
    """The test's namespace onboarded as a Team (adopted: labelled for it) with 2 A100s of the
    kwok GPU nodes, LocalQueue ``gpu``, in a cohort of its own from which it never borrows GPUs.
    The Team comes before the platform's ResourceFlavor: Kueue keeps its ClusterQueue inactive
    and the Team says why, until the flavor exists."""
    ns = e2e_namespace
    tolerate = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    a100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    name = f"{FLAVOR}-{ns[-8:]}"  # the test's own: it does not exist yet
    flavor, *_ = queue_objects(ns, name, a100, tolerate, [], "gpu")
    cluster.kubectl("label", "namespace", ns, f"kubeforge.io/team={ns}")
    apply_all(cluster, [team(ns, name, GPUS, f"kf-e2e-pool-{ns[-8:]}", borrowingLimit="0")])
    inactive = wait_until(
        lambda: (c := quota_condition(cluster, ns)).get("status") == "False" and c,
        60, 1, "the Team saying Kueue's reason",
    )  # fmt: skip
    assert inactive["reason"] == "FlavorNotFound", inactive
    assert name in inactive["message"], inactive
    apply_all(cluster, [flavor])
    wait_until(lambda: team_status(cluster, ns).get("phase") == "Ready", 60, 1, "the Team Ready")
    assert quota_condition(cluster, ns)["reason"] == "QuotaActive"
    yield ns
    if not KEEP:
        cluster.kubectl("delete", "team", ns, "--wait=false", check=False)
        cluster.kubectl("delete", "resourceflavor", name, "--wait=false", check=False)


def gpu_workbench(cluster: Cluster, ns: str, name: str, gpus: int = 1, queue: str = "gpu") -> None:
    body = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "Workbench",
        "metadata": {"name": name, "namespace": ns},
        # on a kwok GPU node: the quota is the subject here, not the container
        "spec": {
            "catalogImage": "jupyter",
            "resources": {"cpu": "500m", "memory": "1Gi", "accelerator": {"count": gpus}},
            "queueName": queue,
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))


def phase(cluster: Cluster, ns: str, name: str) -> str:
    return str((get(cluster, "workbench", ns, name).get("status") or {}).get("phase"))


def wait_phase(cluster: Cluster, ns: str, name: str, want: str, timeout: float = 120) -> Any:
    try:
        wait_until(lambda: phase(cluster, ns, name) == want, timeout, 1, f"{name} {want}")
    except AssertionError as err:
        raise AssertionError(f"{err}; the namespace then: {_snapshot(cluster, ns)}") from None
    return get(cluster, "workbench", ns, name)


def _snapshot(cluster: Cluster, ns: str) -> str:
    """What a wait that timed out saw, kept in test-artifacts/ for the next engineer: the
    Workbenches' status, the pods, Kueue's Workloads and the namespace's Events in order."""
    views = [
        ("get", "workbenches", "-n", ns, "-o", "yaml"),
        ("get", "pods,workloads", "-n", ns, "-o", "wide"),
        ("get", "pods", "-n", ns, "-o", "yaml"),
        ("get", "events", "-n", ns, "--sort-by=.lastTimestamp"),
        ("get", "pods", "-A", "-o", "wide", "--field-selector=status.phase!=Succeeded"),
    ]
    text = "\n\n".join(
        f"$ kubectl {' '.join(v)}\n{cluster.kubectl(*v, check=False).stdout}" for v in views
    )
    out = REPO / "test-artifacts" / f"queueing-{ns}.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    return str(out)


def gpu_usage(cluster: Cluster, cq: str) -> float:
    status = json.loads(cluster.kubectl("get", "clusterqueue", cq, "-o", "json").stdout)["status"]
    for flavor in status.get("flavorsUsage") or []:
        for res in flavor["resources"]:
            if res["name"] == "nvidia.com/gpu":
                return float(res["total"])
    return 0.0


@pytest.fixture
def other_team(cluster: Cluster, team_queue: str) -> Iterator[str]:
    """A second Team, its namespace made by the operator, with 1 A100 of the first one's flavor
    in its cohort."""
    first = team_queue
    name = f"{first}-b"
    apply_all(cluster, [team(name, f"{FLAVOR}-{first[-8:]}", 1, f"kf-e2e-pool-{first[-8:]}")])
    wait_until(lambda: team_status(cluster, name).get("phase") == "Ready", 60, 1, "Team B Ready")
    yield name
    if not KEEP:
        cluster.kubectl("delete", "team", name, "--wait=false", check=False)
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def scraped(query: str) -> dict[str, float]:
    """An instant query of the local cluster's Prometheus: each series' ``team`` label (or
    ``state``) and value."""
    prometheus = node_control("monitoring").api_url()
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310
        result = json.loads(resp.read())["data"]["result"]
    return {r["metric"].get("state") or r["metric"]["team"]: float(r["value"][1]) for r in result}


@pytest.mark.slow  # Kueue's controller on the real node and the chart's operator
def test_the_third_gpu_workbench_queues_with_its_position_then_runs_when_one_stops(
    cluster: Cluster, team_queue: str, other_team: str
) -> None:
    ns, ns_b = team_queue, other_team
    for name in ("wb1", "wb2"):
        gpu_workbench(cluster, ns, name)
        running = wait_phase(cluster, ns, name, "Running")
        assert running["status"]["gpus"] == 1
        assert "queue" not in running["status"]
    # Kueue's ClusterQueue status catches up a moment after the admissions
    wait_until(lambda: gpu_usage(cluster, ns) == GPUS, 30, 1, "the ClusterQueue's GPU usage")

    gpu_workbench(cluster, ns, "wb3")
    queued = wait_for_condition(cluster, "workbench", ns, "wb3", "Scheduled", reason="Queued")

    def told() -> dict[str, Any] | None:
        # the position (visibility API) can come before Kueue's scheduler writes its reason
        wb3 = get(cluster, "workbench", ns, "wb3")
        queue = wb3["status"].get("queue") or {}
        return wb3 if queue.get("position") and "quota" in (queue.get("message") or "") else None

    queued = wait_until(told, 60, 1, "wb3's position and Kueue's reason")
    assert queued["status"]["phase"] == "Queued"
    queue = queued["status"]["queue"]
    assert (queue["localQueue"], queue["clusterQueue"], queue["position"]) == ("gpu", ns, 1)
    assert queue["reason"] == "Pending"
    assert "insufficient unused quota for nvidia.com/gpu" in queue["message"]
    message = condition(queued, "Scheduled")["message"]
    where = f"LocalQueue gpu (ClusterQueue {ns}), position 1"
    assert message.startswith(f"waiting for quota in {where}")
    assert condition(queued, "Ready")["status"] == "False"
    # Kueue holds the pod itself back: no node, its admission gate on
    pod = get(cluster, "pod", ns, "wb3-0")
    assert not pod["spec"].get("nodeName")
    assert {"name": "kueue.x-k8s.io/admission"} in pod["spec"]["schedulingGates"]

    # the REST API shows the same numbers as Kueue's ClusterQueue, and the dry run what is short
    # (Kueue counts the pending workload in the ClusterQueue's status a moment after it told
    # wb3 its position: one CI run read 0)
    def api_queues() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = call_api(cluster, f"/api/v1/namespaces/{ns}/queues")["queues"]
        return found if found and found[0]["pendingWorkloads"] == 1 else None

    queues = wait_until(api_queues, 30, 1, "the REST API's pending workload")
    assert [q["name"] for q in queues] == ["gpu"]
    gpu_row = next(r for r in queues[0]["quota"] if r["resource"] == "nvidia.com/gpu")
    assert (gpu_row["nominal"], gpu_row["used"]) == (GPUS, gpu_usage(cluster, ns))
    assert (queues[0]["admittedWorkloads"], queues[0]["pendingWorkloads"]) == (2, 1)
    assert [(p["owner"], p["position"]) for p in queues[0]["pending"]] == [("StatefulSet/wb3", 1)]

    # and the Team, for its admin (kubectl get team): the same numbers, read within 10 s
    def team_usage() -> dict[str, Any] | None:
        usage = team_status(cluster, ns).get("quota") or {}
        return usage if usage.get("pendingWorkloads") == 1 else None

    usage = wait_until(team_usage, 30, 1, "the Team's quota usage")
    assert usage["admittedWorkloads"] == 2
    gpu = next(r for r in usage["flavors"][0]["resources"] if r["name"] == "nvidia.com/gpu")
    assert (gpu["nominal"], gpu["used"]) == (str(GPUS), str(GPUS))
    answer = call_api(
        cluster, f"/api/v1/namespaces/{ns}/queues/gpu/fit", {"requests": {"nvidia.com/gpu": "1"}}
    )
    assert answer["fits"] is False
    assert answer["short"] == [{"resource": "nvidia.com/gpu", "requested": 1.0, "free": 0.0}]

    # the other team's GPU is its own: its Workbench runs while this team's third still waits
    # (this team never borrows GPUs from the cohort)
    gpu_workbench(cluster, ns_b, "b1")
    assert wait_phase(cluster, ns_b, "b1", "Running")["status"]["gpus"] == 1
    wait_until(lambda: gpu_usage(cluster, ns_b) == 1, 30, 1, "team B's GPU usage")
    assert phase(cluster, ns, "wb3") == "Queued"
    # the operator's metrics, scraped by Prometheus: Kueue's numbers of each team
    teams = f'team=~"{ns}|{ns_b}"'
    want = {ns: gpu_usage(cluster, ns), ns_b: gpu_usage(cluster, ns_b)}
    gpus = f'{teams},resource="nvidia.com/gpu"'
    wait_until(
        lambda: scraped(f"kubeforge_team_quota_used{{{gpus}}}") == want
        and scraped(f'kubeforge_team_workloads{{team="{ns}"}}') == {"admitted": 2, "pending": 1},
        90, 2, "the teams' GPU usage and workloads in Prometheus",
    )  # fmt: skip
    assert scraped(f"kubeforge_team_quota_nominal{{{gpus}}}") == {ns: GPUS, ns_b: 1}
    assert scraped(f"kubeforge_team_quota_borrowed{{{gpus}}}") == {ns: 0, ns_b: 0}
    # and the platform admin's Teams view of the REST API: the same numbers, both teams
    views = {t["name"]: t for t in call_api(cluster, "/api/v1/teams")["teams"]}
    for team_ns, nominal in ((ns, GPUS), (ns_b, 1)):
        quota = views[team_ns]["quota"]
        gpu = next(r for r in quota["flavors"][0]["resources"] if r["name"] == "nvidia.com/gpu")
        assert (float(gpu["nominal"]), float(gpu["used"])) == (nominal, want[team_ns])
    assert views[ns]["quota"]["pendingWorkloads"] == 1

    # a stopped Workbench gives its GPU back and the queued one is admitted
    cluster.kubectl(
        "patch", "workbench", "wb1", "-n", ns, "--type=merge", "-p", '{"spec":{"stopped":true}}'
    )
    # (its StatefulSet is deleted, not scaled to 0: Kueue v0.17.0 could then keep wb1's Workload
    # admitted with no owner, and wb3 never ran; docs/queueing.md)
    admitted = wait_phase(cluster, ns, "wb3", "Running", timeout=120)
    assert admitted["status"]["gpus"] == 1
    assert "queue" not in admitted["status"]
    assert condition(admitted, "Scheduled")["reason"] == "Scheduled"
    assert wait_phase(cluster, ns, "wb1", "Stopped")["status"]["gpus"] == 0

    # and wb1 leaves no Workload behind to hold quota (the garbage collector's, once its pod went)
    def workloads_of() -> list[str]:
        out = cluster.kubectl("get", "workloads", "-n", ns, "-o", "json").stdout
        return sorted(w["metadata"]["name"].split("-")[1] for w in json.loads(out)["items"])

    wait_until(lambda: workloads_of() == ["wb2", "wb3"], 30, 1, "only wb2's and wb3's Workloads")
    # Kueue's ClusterQueue status catches up a moment after the admissions
    wait_until(lambda: gpu_usage(cluster, ns) == GPUS, 30, 1, "the ClusterQueue's GPU usage")

    # a new pod shape Kueue's webhook will not take in place: the StatefulSet is recreated
    cluster.kubectl(
        "patch", "workbench", "wb2", "-n", ns, "--type=merge",
        "-p", '{"spec":{"resources":{"cpu":"600m"}}}',
    )  # fmt: skip

    def wb2_cpu() -> str | None:
        containers = get(cluster, "pod", ns, "wb2-0").get("spec", {}).get("containers") or [{}]
        return containers[0].get("resources", {}).get("requests", {}).get("cpu")

    wait_until(lambda: wb2_cpu() == "600m", 120, 1, "wb2's pod recreated with 600m")
    wait_phase(cluster, ns, "wb2", "Running")
    events = cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector", "reason=Recreating,involvedObject.name=wb2",
        "-o", "jsonpath={.items[*].message}",
    ).stdout  # fmt: skip
    assert "recreating it (the home volume is kept)" in events


@pytest.mark.slow
def test_a_missing_queue_and_a_request_no_quota_can_hold_are_said(
    cluster: Cluster, team_queue: str
) -> None:
    ns = team_queue
    gpu_workbench(cluster, ns, "lost", queue="nope")
    lost = wait_for_condition(cluster, "workbench", ns, "lost", "Scheduled", reason="Inadmissible")
    assert lost["status"]["phase"] == "Queued"
    assert (
        "LocalQueue nope or its ClusterQueue does not exist: fix the queue name"
        in (condition(lost, "Scheduled")["message"])
    )
    gpu_workbench(cluster, ns, "big", gpus=GPUS + 1)
    big = wait_for_condition(cluster, "workbench", ns, "big", "Scheduled", reason="ExceedsQuota")
    assert (
        f"asks for {GPUS + 1} nvidia.com/gpu, more than ClusterQueue {ns} can ever give"
        in (condition(big, "Scheduled")["message"])
    )
    assert condition(big, "Ready")["status"] == "False"


@pytest.mark.slow  # KServe's and Kueue's controllers together on the real node
def test_a_model_server_beyond_the_team_quota_queues_its_third_predictor(
    cluster: Cluster, team_queue: str, kserve: None
) -> None:
    """Three 1-GPU predictor replicas in a team of 2 GPUs: KServe's Deployment makes the pods,
    Kueue admits two and holds the third back, and the ModelServer says where it waits."""
    ns = team_queue
    server = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": "detector", "namespace": ns},
        # on the kwok GPU nodes: the quota is the subject here, not the model
        "spec": {
            "model": {"uri": "s3://models/detector/1"},
            "resources": {"cpu": "500m", "memory": "1Gi", "accelerator": {"count": 1}},
            "replicas": {"min": 3, "max": 3},
            "queueName": "gpu",
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(server))

    def queued() -> dict[str, Any] | None:
        status = get(cluster, "modelserver", ns, "detector").get("status") or {}
        return status if (status.get("queue") or {}).get("position") else None

    status = wait_until(queued, 180, 2, "the third predictor's place in the queue")
    assert status["phase"] == "Queued", status
    queue = status["queue"]
    assert (queue["localQueue"], queue["clusterQueue"], queue["position"]) == ("gpu", ns, 1)
    assert "insufficient unused quota for nvidia.com/gpu" in queue["message"]
    isvc = condition(get(cluster, "modelserver", ns, "detector"), "InferenceServiceReady")
    assert isvc["reason"] == "Queued", isvc
    assert isvc["message"].startswith(f"waiting for quota in LocalQueue gpu (ClusterQueue {ns})")
    # Kueue's own account: two predictor pods admitted on A100s, the third gated
    wait_until(lambda: gpu_usage(cluster, ns) == GPUS, 60, 1, "the ClusterQueue's GPU usage")
    pods = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", ns, "-l", "serving.kserve.io/inferenceservice=detector",
            "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    gated = [p for p in pods if p["spec"].get("schedulingGates")]
    assert len(pods) == 3, [p["metadata"]["name"] for p in pods]
    assert len(gated) == 1, [p["metadata"]["name"] for p in pods]
    assert all(p["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu" for p in pods)


# one training run at a time on the real node's CPU: room for one 1-CPU Job in the quota
TRAIN_QUOTA = [("cpu", "1"), ("memory", "4Gi")]
PRIORITIES = {"kf-e2e-low": 100, "kf-e2e-high": 1000}
LONG_RUN = 300  # steps: long enough to be preempted partway (at most 320: the curve's 32 points)
# the long runs' batches: training on its quota's one thread (cgroups.fit_torch_threads) takes
# 22 ms a step of 8 here (33 on torch's two), and 300 of them were over before Kueue's
# preemption landed (one CI run); a step of 32 takes 63 ms
LONG_BATCH = 32


@pytest.fixture
def train_queue(cluster: Cluster, kueue: None, e2e_namespace: str) -> Iterator[str]:
    """One CPU of the real node for the test's namespace (LocalQueue ``train``), a lower
    priority preempted within it, and WorkloadPriorityClasses low and high."""
    ns = e2e_namespace
    real = ON_REAL_NODE["nodeSelector"]
    objects = queue_objects(
        ns, "kf-e2e-real-node", real, ON_REAL_NODE["tolerations"], TRAIN_QUOTA, "train",
        preemption={"withinClusterQueue": "LowerPriority"},
    )  # fmt: skip
    apply_all(cluster, objects)
    # the tiers as a platform declares them: the chart's kueue.priorityClasses
    tiers = [{"name": n, "value": v, "description": f"e2e: {n}"} for n, v in PRIORITIES.items()]
    priorities = chart_part("templates/queueing.yaml", kueue={"priorityClasses": tiers})
    cluster.kubectl("apply", "-f", "-", stdin=priorities)
    yield ns
    if not KEEP:
        cluster.kubectl("delete", "clusterqueue", ns, "--wait=false", check=False)


def ftj_status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, "finetunejob", ns, name).get("status") or {})


def training_logs(cluster: Cluster, ns: str, name: str) -> str:
    out = cluster.kubectl(
        "logs", "-n", ns, "-l", f"job-name={name}-train", "--tail=-1", check=False
    )
    return out.stdout


# three real training runs on the real node (the job backend's validation and training Jobs in
# the trainer image, torch on the CPU, the model registered on a volume with its lineage)
@pytest.mark.slow
@pytest.mark.timeout(600)  # three training runs one after the other: 250-300 s on two cores
def test_a_preempted_finetunejob_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_run(
    cluster: Cluster, train_queue: str, trainer_image: None, tmp_path: Path
) -> None:
    ns = train_queue
    training_volume(cluster, ns, tmp_path)
    run = {"queueName": "train"}
    # no checkpoint at an interval: the one it resumes from can only be the one saved at SIGTERM
    low = finetunejob("low", LONG_RUN, priorityClass="kf-e2e-low", save_steps=LONG_RUN,
                      batch_size=LONG_BATCH, **run)  # fmt: skip
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(low))
    # the low-priority run trains (its first progress line: step 10) ...
    wait_until(lambda: '"loss"' in training_logs(cluster, ns, "low"), 300, 2, "low trains")
    # ... until a high-priority one needs its CPU: Kueue preempts it, it checkpoints and waits
    high = finetunejob("high", 20, priorityClass="kf-e2e-high", **run)
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(high))
    wait_until(lambda: ftj_status(cluster, ns, "low").get("preemptions") == 1, 300, 1, "preempted")
    queued = wait_until(
        lambda: (s := ftj_status(cluster, ns, "low")).get("queue") and s, 120, 1, "low queued"
    )
    assert queued["phase"] == "Queued"
    assert (queued["queue"]["localQueue"], queued["queue"]["clusterQueue"]) == ("train", ns)
    events = cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector", "reason=Preempted,involvedObject.name=low",
        "-o", "jsonpath={.items[*].message}",
    ).stdout  # fmt: skip
    assert "resumes from it when admitted again" in events

    done = wait_for_condition(cluster, "finetunejob", ns, "high", "Succeeded", status="True",
                              timeout=420)  # fmt: skip
    assert "preemptions" not in done["status"]
    resumed = wait_for_condition(cluster, "finetunejob", ns, "low", "Succeeded", status="True",
                                 timeout=600)["status"]  # fmt: skip
    step = resumed["training"]["resumedFromStep"]
    assert 10 <= step < LONG_RUN  # from the checkpoint saved at the signal, not from zero
    assert resumed["training"]["steps"] == LONG_RUN
    assert resumed["preemptions"] == 1
    assert "queue" not in resumed
    lineage = json.loads(cluster.kubectl(
        "exec", "-n", ns, "client", "--", "cat", "/work/models/low/v1/lineage.json"
    ).stdout)  # fmt: skip
    assert lineage["run"]["training"]["resumedFromStep"] == step

    # the same run without a preemption: the same steps, and a final loss within 5 %
    ref = finetunejob("ref", LONG_RUN, priorityClass="kf-e2e-low", save_steps=LONG_RUN,
                      batch_size=LONG_BATCH, **run)  # fmt: skip
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(ref))
    whole = wait_for_condition(cluster, "finetunejob", ns, "ref", "Succeeded", status="True",
                               timeout=600)["status"]  # fmt: skip
    curve = whole["training"].pop("lossCurve")
    assert whole["training"] == {"steps": LONG_RUN, "resumedFromStep": 0}
    # the loss as logged every 10 steps, the whole run; the resumed attempt's from where it resumed
    assert [p["step"] for p in curve] == list(range(10, LONG_RUN + 1, 10))
    assert resumed["training"]["lossCurve"][0]["step"] > step
    assert resumed["training"]["lossCurve"][-1]["step"] == LONG_RUN
    assert whole["metrics"]["loss"] < whole["metrics"]["baseLoss"]  # training helped
    assert whole["model"]["uri"] == "pvc://work/models/ref/v1"
    assert whole["datasetDigest"]
    # every validation and training pod ran on the real node, as the trainer image's container
    pods = json.loads(
        cluster.kubectl("get", "pods", "-n", ns, "-l", "job-name", "-o", "json").stdout
    )["items"]
    assert len(pods) >= 6
    for pod in pods:
        assert pod["spec"]["nodeName"] == "kf-node-0"
        assert pod["spec"]["containers"][0]["image"] == "localhost/kubeforge/kubeforge-trainer:dev"
    figures = {
        "steps": LONG_RUN,
        "resumedFromStep": step,
        "preemptedLoss": resumed["metrics"]["loss"],
        "uninterruptedLoss": whole["metrics"]["loss"],
    }
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "e2e-preemption.json").write_text(json.dumps(figures, indent=1))
    assert resumed["metrics"]["loss"] == pytest.approx(whole["metrics"]["loss"], rel=0.05)


@pytest.fixture
def trainer(kueue: None) -> Iterator[None]:
    """Kubeflow Trainer's and JobSet's controllers (localcluster.py trainer up) for this test
    only: their requests would take CPU of the real node the other tests' training needs."""
    subprocess.run([*LOCALCLUSTER, "trainer", "up"], check=True, timeout=600)
    yield
    if not KEEP:
        subprocess.run([*LOCALCLUSTER, "trainer", "down"], check=True, timeout=600)


@pytest.fixture
def trainjob_queue(cluster: Cluster, trainer: None, e2e_namespace: str) -> Iterator[str]:
    """Room on the real node for two half-CPU training nodes (LocalQueue ``train``), and the
    chart's ClusterTrainingRuntime (trainer.trainingRuntime) that the TrainJobs name."""
    ns = e2e_namespace
    quota = [("cpu", "1"), ("memory", "5Gi")]
    real = ON_REAL_NODE["nodeSelector"]
    objects = queue_objects(
        ns, "kf-e2e-real-node", real, ON_REAL_NODE["tolerations"], quota, "train"
    )  # fmt: skip
    apply_all(cluster, objects)
    runtime = chart_part("templates/trainingruntime.yaml", "trainer.trainingRuntime.enabled=true")
    cluster.kubectl("apply", "-f", "-", stdin=runtime)
    yield ns
    if not KEEP:
        cluster.kubectl("delete", "clusterqueue", ns, "--wait=false", check=False)


def node_pods(cluster: Cluster, ns: str, train_job: str) -> list[dict[str, Any]]:
    selector = f"jobset.sigs.k8s.io/jobset-name={train_job}"
    out = cluster.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json").stdout
    return sorted(
        json.loads(out)["items"],
        key=lambda p: p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
    )


# a real distributed run: Kueue admits the TrainJob as one workload of two pods, Trainer makes it
# a JobSet, JobSet two indexed Jobs behind a headless Service; torchrun in each pod joins the
# other (gloo on the CPU), both ranks train, rank 0 evaluates and registers the model
@pytest.mark.slow
def test_a_two_node_trainjob_trains_under_the_queue_as_one_gang_and_registers_a_model(
    cluster: Cluster, trainjob_queue: str, trainer_image: None, tmp_path: Path
) -> None:
    ns = trainjob_queue
    training_volume(cluster, ns, tmp_path)
    steps = 20
    ftj = finetunejob("multi", steps, cpu="500m", queueName="train")
    ftj["spec"]["resources"]["nodes"] = 2
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(ftj))
    done = wait_for_condition(cluster, "finetunejob", ns, "multi", "Succeeded", status="True",
                              timeout=600)["status"]  # fmt: skip
    assert done["runId"] == f"trainjob/{ns}/multi-train"
    assert done["training"]["steps"] == steps
    assert done["model"]["uri"] == "pvc://work/models/multi/v1"
    assert done["metrics"]["loss"] < done["metrics"]["baseLoss"]
    # Kueue's account: one workload for both nodes, admitted on the real node's flavor
    trainjob = get(cluster, "trainjob", ns, "multi-train")
    workloads = json.loads(
        cluster.kubectl("get", "workloads", "-n", ns, "-o", "json").stdout
    )["items"]  # fmt: skip
    (workload,) = [
        w for w in workloads
        if any(o["uid"] == trainjob["metadata"]["uid"] for o in w["metadata"]["ownerReferences"])
    ]  # fmt: skip
    (pod_set,) = workload["spec"]["podSets"]
    assert (pod_set["name"], pod_set["count"]) == ("node", 2)
    assert condition(workload, "Admitted")["status"] == "True"
    # two pods (one indexed Job), node ranks 0 and 1, each the trainer image's torchrun; rank 1
    # trained the same steps and registered nothing (its termination message has no model)
    pods = node_pods(cluster, ns, "multi-train")
    assert len(pods) == 2
    messages = []
    for rank, pod in enumerate(pods):
        assert pod["status"]["phase"] == "Succeeded", pod["status"]
        ctr = pod["spec"]["containers"][0]
        assert ctr["image"] == "localhost/kubeforge/kubeforge-trainer:dev"
        assert ctr["command"][:3] == ["python", "-m", "torch.distributed.run"]
        env = {e["name"]: e.get("value") for e in ctr.get("env") or []}
        assert env["PET_NNODES"] == "2"
        assert env["PET_MASTER_ADDR"] == "multi-train-node-0-0.multi-train"
        assert pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == str(rank)
        term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        messages.append(json.loads(term["message"]))
    assert "model" in messages[0]
    assert "model" not in messages[1]
    assert messages[1]["training"]["steps"] == steps
    lineage = json.loads(cluster.kubectl(
        "exec", "-n", ns, "client", "--", "cat", "/work/models/multi/v1/lineage.json"
    ).stdout)  # fmt: skip
    assert lineage["run"]["id"] == f"trainjob/{ns}/multi-train"

"""The Helm chart on the local control plane (its rendering alone: test_chart_render.py): install,
upgrade and uninstall; the image-registry admission policy in the real apiserver; the operator
running under the chart's ServiceAccount (its API calls against its ClusterRole, from the audit
log); two replicas with leader election.

Helm, kubectl and kube-apiserver are the real programs. The cluster runs no containers
(kwok): the chart's pods are scheduled, admitted by Pod Security (restricted) and marked ready by
kwok, and the operator itself runs as a local process with the ServiceAccount's token.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import (
    REPO,
    Cluster,
    OperatorProcess,
    helm_binary,
    run_helm,
    start_operator,
    stop_operator,
    wait_until,
)
from tests.integration.test_chart_render import (  # the release both modules name
    CHART,
    HTTP_ROUTE,
    INGRESS,
    NAMESPACE,
    RELEASE,
    find,
    grants,
    render,
)

OPERATOR_SA = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-operator"


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


def upgrade(
    helm: str, cluster: Cluster, *settings: str, dry_run: bool = False
) -> subprocess.CompletedProcess[str]:
    """`helm upgrade --reuse-values --wait` of the installed release with ``--set``s (with
    ``dry_run``: `--dry-run` instead of `--wait`, nothing changed; the output has the NOTES)."""
    sets = [arg for setting in settings for arg in ("--set", setting)]
    return run_helm(
        helm,
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        NAMESPACE,
        "--reuse-values",
        "--dry-run" if dry_run else "--wait",
        *sets,
        kubeconfig=cluster.kubeconfig,
    )


def sa_kubeconfig(cluster: Cluster, workdir: Path, account: str) -> str:
    """A kubeconfig that authenticates as a ServiceAccount of the release (TokenRequest)."""
    token = cluster.kubectl(
        "create", "token", account, "-n", NAMESPACE, "--duration=2h"
    ).stdout.strip()
    cfg = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = cfg["contexts"][0]["context"]
    cfg["users"] = [{"name": account, "user": {"token": token}}]
    context["user"] = account
    cfg["contexts"] = [{"name": account, "context": context}]
    cfg["current-context"] = account
    path = workdir / f"kubeconfig-{account}"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="module")
def installed(cluster: Cluster, helm: str) -> Iterator[Cluster]:
    """The chart installed into kubeforge-system (Pod Security: restricted), as a platform team
    would: `helm install --wait`. Uninstalled afterwards; the user roles the session applied
    from crds/rbac are then applied again."""
    if not cluster.local:
        pytest.skip("installs into the embedded control plane (its kwok nodes and audit log)")
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    cluster.kubectl(
        "label",
        "--overwrite",
        "namespace",
        NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
    )
    # the session applied crds/rbac with kubectl; Helm adopts nothing it did not create
    cluster.kubectl("delete", "-f", str(REPO / "crds" / "rbac"), "--ignore-not-found")
    try:
        run_helm(
            helm,
            "install",
            RELEASE,
            str(CHART),
            "-n",
            NAMESPACE,
            "--wait",
            "--timeout=180s",
            "--set",
            "monitoring.serviceMonitor.enabled=true",
            "--set",
            "monitoring.prometheusRule.enabled=true",
            kubeconfig=cluster.kubeconfig,
        )
        yield cluster
    finally:
        run_helm(
            helm,
            "uninstall",
            RELEASE,
            "-n",
            NAMESPACE,
            "--wait",
            kubeconfig=cluster.kubeconfig,
            check=False,
        )
        cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "rbac")
        )


def test_install_creates_everything_and_the_operator_becomes_available(
    installed: Cluster, helm: str
) -> None:
    cluster = installed
    deploys = json.loads(cluster.kubectl("get", "deploy", "-n", NAMESPACE, "-o", "json").stdout)[
        "items"
    ]
    by_name = {d["metadata"]["name"]: d for d in deploys}
    assert set(by_name) == {f"{RELEASE}-operator", f"{RELEASE}-api"}
    operator = by_name[f"{RELEASE}-operator"]
    available = {c["type"]: c["status"] for c in operator["status"]["conditions"]}
    assert available["Available"] == "True"
    assert operator["status"]["readyReplicas"] == 2
    # Pod Security admission (restricted, enforced on the namespace) admitted every pod
    pods = json.loads(cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json").stdout)
    assert len(pods["items"]) == 3
    for kind_name in (
        "serviceaccount/kubeforge-operator",
        "clusterrole/kubeforge-operator",
        "role/kubeforge-operator-leader-election",
        "networkpolicy/kubeforge-operator",
        "networkpolicy/kubeforge-default-deny",
        "servicemonitor/kubeforge",
        "prometheusrule/kubeforge",
        "validatingadmissionpolicy/kubeforge-image-registries",
        "clusterrole/kubeforge-edit",
    ):
        cluster.kubectl("get", kind_name, "-n", NAMESPACE)
    notes = run_helm(helm, "status", RELEASE, "-n", NAMESPACE, kubeconfig=cluster.kubeconfig)
    assert "port-forward svc/kubeforge-api 8000:80" in notes.stdout


def admission(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> str:
    """Server-side dry run (through admission, nothing stored): '' if admitted, else the error."""
    proc = cluster.kubectl(
        "create",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps(manifest),
        check=False,
    )
    return "" if proc.returncode == 0 else proc.stderr


def workbench(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "Workbench",
        "metadata": {"name": "nb"},
        "spec": {"image": image},
    }


def test_admission_policy_allows_only_listed_registries(installed: Cluster, helm: str) -> None:
    cluster = installed
    ns = f"kf-test-vap-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    try:
        # the apiserver enforces a new policy once its informers have it
        wait_until(
            lambda: (
                "is not from an allowed registry"
                in admission(cluster, ns, workbench("evil.example.com/miner:1"))
            ),
            timeout=30,
            what="the policy to be enforced",
        )
        error = admission(cluster, ns, workbench("evil.example.com/miner:1"))
        assert "ValidatingAdmissionPolicy 'kubeforge-image-registries'" in error
        assert (
            "spec.image: evil.example.com/miner:1 is not from an allowed registry "
            "(ghcr.io/kubeforge/, quay.io/jupyter/)" in error
        )
        assert "admissionPolicy.allowedRegistries" in error
        assert (
            admission(cluster, ns, workbench("quay.io/jupyter/minimal-notebook:2025-10-20")) == ""
        )
        # Docker Hub short names mean docker.io/library/...
        assert "docker.io/library/python:3.11" in admission(cluster, ns, workbench("python:3.11"))
        # a prefix must match at a path boundary: quay.io/jupyterx/ is another organisation
        assert admission(cluster, ns, workbench("quay.io/jupyterx/nb:1"))
        ms = {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "ModelServer",
            "metadata": {"name": "bot"},
            "spec": {"model": {"uri": "oci://evil.example.com/models/bot:1"}},
        }
        assert "spec.model.uri: evil.example.com/models/bot:1" in admission(cluster, ns, ms)
        ms["spec"]["model"]["uri"] = "pvc://models/bot"  # not an image: not the policy's business
        assert admission(cluster, ns, ms) == ""

        # requireDigest: tags are refused, digests admitted
        upgrade(helm, cluster, "admissionPolicy.requireDigest=true")
        tagged = workbench("quay.io/jupyter/minimal-notebook:2025-10-20")
        wait_until(
            lambda: "must be pinned by digest" in admission(cluster, ns, tagged),
            timeout=30,
            what="the digest rule",
        )
        pinned = workbench("quay.io/jupyter/minimal-notebook@sha256:" + "a" * 64)
        assert admission(cluster, ns, pinned) == ""
    finally:
        upgrade(helm, cluster, "admissionPolicy.requireDigest=false")
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def metric(op: OperatorProcess, name: str) -> float | None:
    """The value of an unlabelled sample (or the sum of a labelled family) on /metrics."""
    with urllib.request.urlopen(op.metrics_url, timeout=5) as resp:  # noqa: S310
        lines = resp.read().decode().splitlines()
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{")
    ]
    return sum(values) if values else None


@pytest.fixture(scope="module")
def operator_kubeconfig(installed: Cluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    return sa_kubeconfig(installed, tmp_path_factory.mktemp("sa"), f"{RELEASE}-operator")


def isolated_namespace(cluster: Cluster, purpose: str) -> str:
    """A namespace the session's operator leaves alone, Pod Security restricted enforced."""
    ns = f"kf-iso-{purpose}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    return ns


def reconciled(cluster: Cluster, ns: str, resource: str, name: str) -> bool:
    obj = json.loads(cluster.kubectl("get", resource, name, "-n", ns, "-o", "json").stdout)
    status = obj.get("status") or {}
    return status.get("observedGeneration") == obj["metadata"]["generation"]


# Rules of the operator's ClusterRole that the scenario below does not reach, and why. Each is a
# call in the code on a path that needs more than the local control plane has (a Kueue queue, a
# GPU cluster's TrainJobs, a drifted model) or a spec this scenario does not use.
STANDARD_MODE = (
    "KServe's Standard mode: the ModelServer's HTTPRoute and its Gateway (this tier's operator "
    "plays against the stand-in of KServe's Serverless mode); tests/e2e/test_modelserver_real.py "
    "exercises them with the chart's operator and KServe's real controller"
)
NOT_EXERCISED: dict[tuple[str, str, str], str] = {
    ("kubeforge.io", "workbenches", "patch"): "the culled-at annotation: an idle notebook "
    "(tests/integration/test_workbench.py culls one, with the operator's local user)",
    ("kubeforge.io", "finetunejobs", "create"): "a DriftMonitor's retraining run: drifted "
    "traffic through a running drift service (tests/integration/test_driftmonitor.py)",
    ("", "nodes", "get"): "the node of a notebook pod that is not ready: a stopped kubelet "
    "(tests/e2e/test_workbench_real.py stops the real node's, with the chart's operator)",
    **{
        ("gateway.networking.k8s.io", resource, verb): STANDARD_MODE
        for resource, verb in (
            ("httproutes", "get"),
            ("httproutes", "create"),
            ("httproutes", "patch"),
            ("gateways", "get"),
        )
    },
}
KUEUE = (
    "Kueue's account of a workload it holds back (its Workload, LocalQueue, ClusterQueue and the "
    "visibility API's position): no Kueue runs in this tier; tests/e2e/test_queueing_real.py "
    "exercises them with the chart's operator and Kueue's real controller"
)
NOT_EXERCISED |= {
    ("kueue.x-k8s.io", "workloads", "get"): KUEUE,
    ("kueue.x-k8s.io", "localqueues", "get"): KUEUE + "; a Team's LocalQueue is read back on a "
    "resync pass, which may or may not come while the Team has a quota here",
    ("rbac.authorization.k8s.io", "rolebindings", "delete"): "a Team's access revoked when its "
    "namespace is handed back (its label removed): tests/integration/test_team.py",
    ("rbac.authorization.k8s.io", "clusterroles", "bind"): "checked by the apiserver when the "
    "operator writes a Team's RoleBindings, not a request of its own (they are refused without "
    "it)",
    ("visibility.kueue.x-k8s.io", "localqueues/pendingworkloads", "get"): KUEUE,
    ("serving.kserve.io", "llminferenceservices", "delete"): "a canary member drained after "
    "its rollout ended: no LLMInferenceService controller runs here to report one Ready "
    "(tests/unit/test_modelserver_llmisvc.py walks the rollout)",
    ("apps", "statefulsets", "delete"): "a notebook StatefulSet Kueue's webhook refuses to "
    "change in place: no Kueue runs in this tier; tests/e2e/test_queueing_real.py changes a "
    "queued Workbench's resources with Kueue's real controller",
}
# Of those, the calls that a slow machine may still make in this scenario: a notebook pod that is
# briefly not ready (kwok marks it Ready a moment after it starts) sends the operator to its node.
TIMING_DEPENDENT = {("", "nodes", "get"), ("kueue.x-k8s.io", "localqueues", "get")}
# Beyond the examples: the paths of a multi-node run reading S3 with a data connection, a model
# served from a URI (an InferenceService at once), a named ServingRuntime, and a DriftMonitor on
# that model (LATE_MONITOR, below).
MORE_PATHS: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "List",
    "items": [
        *(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
            for claim in ("models", "datasets")  # the examples' pvc:// volumes
        ),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3-datasets"},
            "stringData": {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"},
        },
        {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "multi-node"},
            "spec": {
                "baseModel": {"uri": "hf://sshleifer/tiny-gpt2"},
                "dataset": {"uri": "s3://datasets/tickets.jsonl", "dataConnection": "s3-datasets"},
                "resources": {"nodes": 2},
                "backend": "job",
                "output": {"uri": "pvc://models/multi", "modelName": "multi"},
            },
        },
        {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "ModelServer",
            "metadata": {"name": "by-uri"},
            "spec": {"model": {"uri": "pvc://models/bot/1"}, "runtime": {"modelFormat": "sklearn"}},
        },
        {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "ModelServer",
            "metadata": {"name": "custom-runtime"},
            "spec": {
                "model": {"uri": "pvc://models/bot/1"},
                "runtime": {"modelFormat": "transformers", "servingRuntime": "vllm"},
            },
        },
        {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "ModelServer",
            "metadata": {"name": "llm"},
            "spec": {
                "model": {"uri": "hf://sshleifer/tiny-gpt2"},
                "runtime": {"servedAs": "LLMInferenceService"},
            },
        },
    ],
}
# Created once the ModelServer's InferenceService exists: the monitor then finds it without its
# logger and annotates the ModelServer (the `modelservers patch` path). Created together, the
# ModelServer could see the monitor first and set the logger itself, and the path would not run.
LATE_MONITOR: dict[str, Any] = {
    "apiVersion": "kubeforge.io/v1alpha1",
    "kind": "DriftMonitor",
    "metadata": {"name": "by-uri-drift"},
    "spec": {
        "target": {"modelServer": "by-uri"},
        "reference": {"source": "uri", "uri": "pvc://datasets/reference.jsonl"},
    },
}


def team_of(name: str) -> dict[str, Any]:
    """A Team with a member of each role and a quota (Kueue's CRDs only, no controller here:
    its ClusterQueue stays pending)."""
    return {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "Team",
        "metadata": {"name": name},
        "spec": {
            "members": [
                {"kind": "User", "name": "alice@example.com"},
                {"kind": "Group", "name": "readers", "role": "view"},
            ],
            "quota": {
                "flavors": [
                    {"name": "a100", "resources": [{"name": "nvidia.com/gpu", "nominal": 2}]}
                ]
            },
        },
    }


DROP_QUOTA = json.dumps([{"op": "remove", "path": "/spec/quota"}])


def test_operator_api_calls_and_its_cluster_role_agree(
    installed: Cluster, helm: str, operator_kubeconfig: str, tmp_path: Path
) -> None:
    """The operator, running as the chart's ServiceAccount, reconciles one object of each kind;
    the apiserver's audit log (every request of kubeforge-system's ServiceAccounts) shows no
    refused call, and every permission the ClusterRole grants was used or is listed above."""
    cluster = installed
    ns = isolated_namespace(cluster, "rbac")
    # the release as it would be for an operator that watches only this namespace
    upgrade(helm, cluster, f"operator.watchNamespaces={{{ns}}}")
    offset = cluster.audit_offset()
    op = start_operator(
        cluster,
        tmp_path,
        kubeconfig=operator_kubeconfig,
        namespaces=json.dumps([ns, f"{ns}-team"]),  # the Team's namespace is its name
        leader_election="true",
        leader_election_namespace=NAMESPACE,
        leader_election_lease=f"rbac-{ns}",
    )
    try:
        for example in ("workbench", "finetunejob", "modelserver", "driftmonitor"):
            cluster.kubectl("apply", "-n", ns, "-f", str(REPO / "examples" / f"{example}.yaml"))
        cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(MORE_PATHS))
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(team_of(f"{ns}-team")))
        wait_until(
            lambda: (
                cluster.kubectl("get", "inferenceservice/by-uri", "-n", ns, check=False).returncode
                == 0
            ),
            timeout=60,
            what="inferenceservice/by-uri",
        )
        cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(LATE_MONITOR))
        for resource, name in (
            ("workbench", "notebook"),
            ("finetunejob", "support-bot-v1"),
            ("finetunejob", "multi-node"),
            ("modelserver", "support-bot"),
            ("modelserver", "by-uri"),
            ("modelserver", "custom-runtime"),
            ("driftmonitor", "support-bot-drift"),
            ("driftmonitor", "by-uri-drift"),
            ("team", f"{ns}-team"),
        ):
            wait_until(
                lambda r=resource, n=name: reconciled(cluster, ns, r, n),
                timeout=60,
                what=f"{resource} {name} reconciled",
            )
        for child in (
            "prometheusrule/support-bot-drift-drift",
            "inferenceservice/by-uri",
            "trainjob/multi-node-train",
        ):
            wait_until(
                lambda c=child: cluster.kubectl("get", c, "-n", ns, check=False).returncode == 0,
                timeout=90,
                what=child,
            )
        # the Team's quota taken away: its ClusterQueue and LocalQueue are removed
        cluster.kubectl("patch", "team", f"{ns}-team", "--type=json", "-p", DROP_QUOTA)
        wait_until(
            lambda: cluster.kubectl("get", "clusterqueue", f"{ns}-team", check=False).returncode,
            timeout=60,
            what="the Team's ClusterQueue removed",
        )
        time.sleep(6)  # one resync (5 s) more: the periodic paths run too
    finally:
        stop_operator(op)
        cluster.kubectl("delete", "team", f"{ns}-team", "--wait=false", check=False)
        cluster.kubectl("delete", "namespace", f"{ns}-team", "--wait=false", check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
        upgrade(helm, cluster, "operator.watchNamespaces=null")
    events = []
    with cluster.audit_log.open() as f:
        f.seek(offset)
        for line in f:
            event = json.loads(line)
            if event["user"]["username"] == OPERATOR_SA and event.get("objectRef"):
                events.append(event)
    assert events, "no request of the operator's ServiceAccount in the audit log"
    refused = sorted(
        {
            f"{e['verb']} {e['objectRef'].get('apiGroup', '') or 'core'}/"
            f"{e['objectRef']['resource']} ({e['responseStatus'].get('message', '')[:200]})"
            for e in events
            if e.get("responseStatus", {}).get("code") == 403
        }
    )
    assert not refused, "the ClusterRole lacks what the operator calls:\n" + "\n".join(refused)
    used = set()
    for e in events:
        ref = e["objectRef"]
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used.add((ref.get("apiGroup", ""), resource, e["verb"]))
        if e["verb"] == "patch" and e.get("responseStatus", {}).get("code") == 201:
            # a server-side apply that created the object: the apiserver checked create too
            used.add((ref.get("apiGroup", ""), resource, "create"))
    docs = render(helm, "--set", f"operator.watchNamespaces={{{ns}}}")
    granted = grants(find(docs, "ClusterRole", f"{RELEASE}-operator")["rules"]) | grants(
        find(docs, "Role", f"{RELEASE}-operator-leader-election")["rules"]
    )
    assert used <= granted, f"used but not granted: {sorted(used - granted)}"
    unused = granted - used
    never_used = unused - set(NOT_EXERCISED)
    listed_but_used = set(NOT_EXERCISED) - unused - TIMING_DEPENDENT
    assert not never_used, (
        f"granted but never used (least privilege: drop them, or say why): {sorted(never_used)}"
    )
    assert not listed_but_used, f"listed as never used but used: {sorted(listed_but_used)}"


def test_two_replicas_one_leads_and_the_other_takes_over_within_30s(
    installed: Cluster, operator_kubeconfig: str, tmp_path: Path
) -> None:
    cluster = installed
    ns = isolated_namespace(cluster, "leader")
    lease = f"leader-{ns}"
    settings = {
        "namespaces": json.dumps([ns]),
        "leader_election": "true",
        "leader_election_namespace": NAMESPACE,
        "leader_election_lease": lease,
    }
    replicas = {
        name: start_operator(
            cluster,
            tmp_path,
            kubeconfig=operator_kubeconfig,
            leader_election_identity=name,
            **settings,
        )
        for name in ("replica-a", "replica-b")
    }
    try:
        wait_until(
            lambda: (
                sorted(metric(op, "kubeforge_operator_leader") for op in replicas.values())
                == [0.0, 1.0]
            ),
            timeout=30,
            what="exactly one leader",
        )
        leader = next(n for n, op in replicas.items() if metric(op, "kubeforge_operator_leader"))
        standby = next(n for n in replicas if n != leader)
        holder = json.loads(
            cluster.kubectl("get", "lease", lease, "-n", NAMESPACE, "-o", "json").stdout
        )["spec"]
        assert holder["holderIdentity"] == leader

        def create(name: str) -> None:
            wb = workbench("quay.io/jupyter/minimal-notebook:2025-10-20")
            wb["metadata"]["name"] = name
            cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(wb))

        create("before")
        wait_until(
            lambda: reconciled(cluster, ns, "workbench", "before"),
            timeout=30,
            what="the leader to reconcile",
        )
        time.sleep(6)  # a resync too
        # only the leader reconciles: the standby has not even registered its handlers
        assert metric(replicas[leader], "kubeforge_reconcile_total") > 0
        assert not metric(replicas[standby], "kubeforge_reconcile_total")

        killed = time.monotonic()
        replicas[leader].proc.send_signal(signal.SIGKILL)  # no release: the Lease must expire
        replicas[leader].proc.wait(timeout=10)
        create("after")
        wait_until(
            lambda: metric(replicas[standby], "kubeforge_operator_leader") == 1.0,
            timeout=45,
            interval=0.25,
            what="the standby to lead",
        )
        leading = time.monotonic() - killed
        wait_until(
            lambda: reconciled(cluster, ns, "workbench", "after"),
            timeout=45,
            interval=0.25,
            what="the standby to take over",
        )
        takeover = time.monotonic() - killed
        assert takeover <= 30, f"takeover took {takeover:.1f}s"
        assert metric(replicas[standby], "kubeforge_operator_leader") == 1.0
        spec = json.loads(
            cluster.kubectl("get", "lease", lease, "-n", NAMESPACE, "-o", "json").stdout
        )["spec"]
        assert spec["holderIdentity"] == standby
        assert spec["leaseTransitions"] >= 1
        artifacts = REPO / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        (artifacts / "leader-takeover.json").write_text(
            json.dumps(
                {
                    "leading_seconds": round(leading, 2),
                    "takeover_seconds": round(takeover, 2),
                    "lease_seconds": 15,
                }
            )
        )
        print(
            f"after SIGKILL of the leader: leads in {leading:.1f}s, reconciles in {takeover:.1f}s"
        )

        # a clean shutdown releases the Lease: the next replica leads after one retry period
        replicas["replica-c"] = start_operator(
            cluster,
            tmp_path,
            kubeconfig=operator_kubeconfig,
            leader_election_identity="replica-c",
            **settings,
        )
        released = time.monotonic()
        stop_operator(replicas[standby])
        wait_until(
            lambda: metric(replicas["replica-c"], "kubeforge_operator_leader") == 1.0,
            timeout=15,
            what="replica-c to lead after a release",
        )
        assert time.monotonic() - released < 10
    finally:
        for op in replicas.values():
            if op.proc.poll() is None:
                stop_operator(op)
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_upgrade_changes_the_release_and_uninstall_removes_it(
    installed: Cluster, helm: str
) -> None:
    cluster = installed
    upgrade(helm, cluster, "operator.replicas=3", "api.enabled=false")
    deploys = json.loads(cluster.kubectl("get", "deploy", "-n", NAMESPACE, "-o", "json").stdout)
    assert {d["metadata"]["name"]: d["status"].get("readyReplicas") for d in deploys["items"]} == {
        f"{RELEASE}-operator": 3
    }
    history = run_helm(helm, "history", RELEASE, "-n", NAMESPACE, kubeconfig=cluster.kubeconfig)
    assert "deployed" in history.stdout.splitlines()[-1]
    upgrade(
        helm, cluster, "operator.replicas=2", "api.enabled=true", *INGRESS[1::2], *HTTP_ROUTE[1::2]
    )
    # the apiserver admitted the Ingress and (Gateway API's own CRD and rules) the HTTPRoute;
    # NOTES gives the Ingress's URL instead of a port-forward
    for kind in ("ingress", "httproute"):
        exposed = json.loads(
            cluster.kubectl("get", kind, f"{RELEASE}-api", "-n", NAMESPACE, "-o", "json").stdout
        )
        assert "kubeforge.example.com" in json.dumps(exposed["spec"]), kind
    notes = run_helm(helm, "status", RELEASE, "-n", NAMESPACE, kubeconfig=cluster.kubeconfig)
    assert "https://kubeforge.example.com/" in notes.stdout
    without_ingress = upgrade(helm, cluster, "api.ingress.enabled=false", dry_run=True)
    assert f"HTTPRoute {RELEASE}-api on Gateway gateways/public" in without_ingress.stdout
    run_helm(helm, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", kubeconfig=cluster.kubeconfig)
    left = cluster.kubectl(
        "get",
        "deploy,svc,sa,networkpolicy,role,rolebinding,ingress,httproute",
        "-n",
        NAMESPACE,
        "-l",
        f"app.kubernetes.io/instance={RELEASE}",
        "-o",
        "name",
    ).stdout.split()
    assert left == []
    for cluster_scoped in (
        "clusterrole/kubeforge-operator",
        "validatingadmissionpolicy/kubeforge-image-registries",
    ):
        assert cluster.kubectl("get", cluster_scoped, check=False).returncode != 0
    # Helm never deletes CRDs (that would delete every user's objects): they stay
    cluster.kubectl("get", "crd", "workbenches.kubeforge.io")

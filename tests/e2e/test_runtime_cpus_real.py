"""The runtime's CPU budget in real containers on the real node, whose containers run under
cgroup v1 (runc, the cgroupfs driver): ``limits.cpu`` as the kubelet writes it into the
container's CFS quota, found from inside the container, and ``requests.cpu`` in millicores as
the operator hands it to its predictors (``kubeforge_runtimes.threads``,
``kubeforge_pipelines.cgroups``)."""

from __future__ import annotations

import json

from tests.e2e.conftest import apply
from tests.integration.conftest import Cluster

from kubeforge_crds.contracts.serving import ENV_CPU_REQUEST
from kubeforge_labs.gateway import RUNTIME_IMAGE
from kubeforge_labs.kit import ON_REAL_NODE
from kubeforge_operator.modelserver.builders import cpu_millicores

# what the runtime's thread sizing sees, printed as JSON by each container
PROBE = (
    "import json, os; from kubeforge_pipelines import cgroups; "
    "from kubeforge_runtimes import threads; "
    "print(json.dumps({'quota': cgroups.cpu_quota(), "
    f"'request': threads.requested_cpus(os.environ.get('{ENV_CPU_REQUEST}')), "
    "'prefill': threads.prefill_threads(), 'said': threads.describe_budget()}))"
)


def container(name: str, resources: dict[str, dict[str, str]]) -> dict[str, object]:
    """A container of the runtime image that prints ``PROBE``, handed its CPU request as the
    operator hands a predictor its own (``modelserver.builders.cpu_millicores``)."""
    return {
        "name": name,
        "image": RUNTIME_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["python", "-c", PROBE],
        "resources": resources,
        "env": [{"name": ENV_CPU_REQUEST, "value": cpu_millicores(resources["requests"]["cpu"])}],
    }


def test_a_container_plans_for_its_cpu_limit_and_its_request(
    cluster: Cluster, e2e_namespace: str
) -> None:
    namespace = e2e_namespace
    limited = {"requests": {"cpu": "1", "memory": "128Mi"},
               "limits": {"cpu": "1500m", "memory": "256Mi"}}  # fmt: skip
    # as the operator makes a predictor: CPU requested, not capped
    requested = {"requests": {"cpu": "500m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    pod = {
        **ON_REAL_NODE,
        "restartPolicy": "Never",
        "containers": [container("limited", limited), container("requested", requested)],
    }
    apply(cluster, namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cpus"},
                               "spec": pod})  # fmt: skip
    cluster.kubectl(
        "wait", "-n", namespace, "--for=jsonpath={.status.phase}=Succeeded", "pod/cpus",
        "--timeout=120s",
    )  # fmt: skip

    def seen(name: str) -> dict[str, object]:
        out = cluster.kubectl("logs", "-n", namespace, "cpus", "-c", name).stdout
        return dict(json.loads(out.strip().splitlines()[-1]))

    # the kubelet's quota of 1.5 CPUs, read from the container's own cgroup (the old reading of
    # /sys/fs/cgroup/cpu.max alone found nothing on this v1 node); the 1-CPU request is less: a
    # prefill on one CPU
    assert seen("limited") == {
        "quota": 1.5, "request": 1.0, "prefill": 1,
        "said": "a quota of 1.5 CPU(s), 1 CPU(s) requested",
    }  # fmt: skip
    # no quota (no limit, as the operator's predictors): the request bounds it, not the node's
    # cores
    assert seen("requested") == {
        "quota": None, "request": 0.5, "prefill": 1,
        "said": "no CPU quota, 0.5 CPU(s) requested",
    }  # fmt: skip

"""An operator killed half-way through creating 50 Workbenches converges after a restart: every
Workbench Ready, each with exactly its four children, none duplicated or orphaned."""

from __future__ import annotations

import json
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, watch

from tests.integration.conftest import (
    ISOLATED_PREFIX,
    Cluster,
    start_operator,
    stop_operator,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("local_cluster", "operator")
COUNT = 50
CHILDREN = ("statefulsets", "services", "persistentvolumeclaims", "networkpolicies")


@pytest.fixture
def isolated(cluster: Cluster) -> Iterator[str]:
    """A namespace the session's operator does not watch."""
    name = f"{ISOLATED_PREFIX}{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _items(cluster: Cluster, ns: str, resource: str) -> list[dict[str, object]]:
    out = cluster.kubectl("get", resource, "-n", ns, "-o", "json").stdout
    return list(json.loads(out)["items"])


def _ready_count(cluster: Cluster, ns: str) -> int:
    out = cluster.kubectl(
        "get",
        "workbenches",
        "-n",
        ns,
        "-o",
        'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}',
    ).stdout
    return out.split().count("True")


def test_operator_killed_mid_way_converges_without_duplicates(
    cluster: Cluster, isolated: str, tmp_path: Path
) -> None:
    workbenches = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "kubeforge.io/v1alpha1",
                "kind": "Workbench",
                "metadata": {"name": f"wb-{i:02d}", "namespace": isolated},
                "spec": {"image": "jupyter:1", "resources": {"cpu": "10m", "memory": "64Mi"}},
            }
            for i in range(COUNT)
        ],
    }
    # one worker: the first operator goes through the Workbenches one at a time (with eight it
    # made all 50 StatefulSets before a poll of the test saw the first, on a busy CI machine)
    first = start_operator(cluster, tmp_path, namespaces=json.dumps([isolated]), max_workers="1")
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(workbenches))
    # kill it (no chance to clean up) as soon as it has begun: on the first StatefulSet the
    # watch sees (a watch's event comes within milliseconds, where a poll lists every time)
    apps = client.AppsV1Api(cluster.api)
    begun = watch.Watch()
    for _ in begun.stream(apps.list_namespaced_stateful_set, isolated, timeout_seconds=120):
        break
    first.proc.send_signal(signal.SIGKILL)
    begun.stop()
    first.proc.wait(timeout=10)
    part_way = len(_items(cluster, isolated, "statefulsets"))
    assert 0 < part_way < COUNT, f"{part_way} of {COUNT} StatefulSets when the operator was killed"

    second = start_operator(cluster, tmp_path, namespaces=json.dumps([isolated]))
    try:
        wait_until(
            lambda: _ready_count(cluster, isolated) == COUNT,
            300,
            interval=2,
            what=f"all {COUNT} Workbenches to be Ready",
        )
    finally:
        stop_operator(second)

    uids = {
        wb["metadata"]["name"]: wb["metadata"]["uid"]
        for wb in _items(cluster, isolated, "workbenches")
    }
    for resource in CHILDREN:
        items = _items(cluster, isolated, resource)
        owners = Counter(item["metadata"]["ownerReferences"][0]["uid"] for item in items)
        assert len(items) == COUNT, f"{resource}: {len(items)}"
        assert set(owners) == set(uids.values()), f"{resource} with a missing or foreign owner"
        assert set(owners.values()) == {1}, f"{resource} duplicated"
    pods = _items(cluster, isolated, "pods")
    assert len(pods) == COUNT

"""Pieces every kind's child manifests share: owner references, the standard labels, the
restricted Pod Security Standard's security contexts, and the startup probe of a server."""

from __future__ import annotations

from typing import Any

from kubeforge_crds.contracts.labels import (
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    MANAGED_BY,
    PART_OF,
)


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def standard_labels(app: str, instance: str, component: str) -> dict[str, str]:
    return {
        LABEL_NAME: app,
        LABEL_INSTANCE: instance,
        LABEL_COMPONENT: component,
        LABEL_PART_OF: PART_OF,
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def child_metadata(owner: dict[str, Any], name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner["metadata"]["namespace"],
        "labels": labels,
        "ownerReferences": [owner_reference(owner)],
    }


def container_security_context() -> dict[str, Any]:
    """The restricted Pod Security Standard, container level."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context(uid: int = 1000, fs_group: int = 100) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "fsGroup": fs_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def with_pull_policy(manifest: dict[str, Any], policy: str | None) -> dict[str, Any]:
    """``manifest`` with ``imagePullPolicy: policy`` on every container of every pod template
    in it (a Deployment's, a Job's, each replicated Job of a JobSet); unchanged when policy
    is None (Kubernetes' default applies)."""
    if policy is None:
        return manifest

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("containers", "initContainers"):
                for container in node.get(key) or []:
                    if isinstance(container, dict) and "image" in container:
                        container["imagePullPolicy"] = policy
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(manifest)
    return manifest


# A starting server is asked every second whether it serves, for up to 30 minutes: its pod is
# Ready about a second after it listens, since the kubelet runs the readiness probe at once when
# the startup probe succeeds (pkg/kubelet/prober, UpdatePodStatus), where a readiness probe alone,
# every 10 s, made it wait up to 10 s. Liveness is not probed before it either. The kubelet
# restarts a container whose startup probe never succeeds: 30 minutes leaves room for an image's
# own start hooks (a chown of a large home volume, a GPU image's first load) before that.
STARTUP_PROBE_PERIOD_SECONDS = 1
STARTUP_PROBE_FAILURES = 1800


def startup_probe(path: str, port: str) -> dict[str, Any]:
    """An HTTP GET of ``path`` on the named ``port``, every second until it answers (30 min)."""
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": STARTUP_PROBE_PERIOD_SECONDS,
        "failureThreshold": STARTUP_PROBE_FAILURES,
    }

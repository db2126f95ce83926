"""The control plane's configuration files: PKI, tokens, kubeconfigs, the audit policy, the
kwok nodes, the teams' RBAC and the REST API's own RBAC."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

from kfcluster.settings import (
    APISERVER_PORT,
    AUDIT_POLICY,
    STATE,
    TEAMS,
    USERS,
)
from kubeforge_labs.kit import ON_REAL_NODE


def tokens() -> dict[str, str]:
    path = STATE / "tokens.json"
    toks: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if all(user in toks for user in USERS):
        return toks
    toks |= {user: secrets.token_hex(16) for user in USERS if user not in toks}
    path.write_text(json.dumps(toks, indent=2))
    path.chmod(0o600)
    return toks


def audit_log() -> Path:
    return STATE / "logs" / "audit.log"


def write_pki() -> None:
    pki = STATE / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    if not (pki / "sa.key").exists():
        subprocess.run(
            ["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
            check=True,
            capture_output=True,
        )
    write_kubelet_client_pki(pki)
    write_front_proxy_pki(pki)
    (STATE / "audit-policy.json").write_text(json.dumps(AUDIT_POLICY))
    toks = tokens()
    # the apiserver's token file holds every user's token: readable by its owner only
    fd = os.open(STATE / "tokens.csv", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for i, (user, groups) in enumerate(USERS.items()):
            f.write(f'{toks[user]},{user},uid-{i},"{",".join(groups)}"\n')
    (STATE / "tokens.csv").chmod(0o600)  # a file from an earlier start keeps its old mode


def write_kubelet_client_pki(pki: Path) -> None:
    """A CA the real node's kubelet trusts for clients, and the apiserver's client certificate
    from it (logs, exec, port-forward): the kubelet serves nobody without one."""
    _client_pki(
        pki, "kubelet-client-ca", "apiserver-kubelet-client",
        "/O=system:masters/CN=kube-apiserver-kubelet-client",
    )  # fmt: skip


FRONT_PROXY_CLIENT = "front-proxy-client"


def write_front_proxy_pki(pki: Path) -> None:
    """The aggregation layer's: a CA that extension API servers (Kueue's visibility API) trust
    for the requests kube-apiserver proxies to them, and the apiserver's client certificate."""
    _client_pki(pki, "front-proxy-ca", FRONT_PROXY_CLIENT, f"/CN={FRONT_PROXY_CLIENT}")


def _client_pki(pki: Path, ca: str, client: str, subject: str) -> None:
    """A CA ``<ca>.crt`` and a client certificate ``<client>.crt`` it signed (openssl)."""
    ca_key, ca_crt = pki / f"{ca}.key", pki / f"{ca}.crt"
    key, csr, crt = (pki / f"{client}.{ext}" for ext in ("key", "csr", "crt"))
    if crt.exists():
        return
    for cmd in (
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
         "-keyout", str(ca_key), "-out", str(ca_crt), "-subj", f"/CN=kubeforge-{ca}"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(csr), "-subj", subject],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "365", "-out", str(crt)],
    ):  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
    for f in (ca_key, key):
        f.chmod(0o600)


def ca_file() -> Path:
    return STATE / "pki" / "apiserver" / "apiserver.crt"


def kubeconfig_path(user: str = "admin") -> Path:
    return STATE / ("kubeconfig" if user == "admin" else f"kubeconfig-{user}")


def write_kubeconfig(user: str) -> Path:
    path = kubeconfig_path(user)
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kubeforge-local",
                "cluster": {
                    "server": f"https://127.0.0.1:{APISERVER_PORT}",
                    "certificate-authority": str(ca_file()),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": tokens()[user]}}],
        "contexts": [
            {
                "name": f"kubeforge-local-{user}".replace(":", "-"),
                "context": {"cluster": "kubeforge-local", "user": user, "namespace": "default"},
            }
        ],
        "current-context": f"kubeforge-local-{user}".replace(":", "-"),
    }
    path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML
    path.chmod(0o600)
    return path


def kwok_nodes() -> str:
    """Two CPU nodes and two GPU nodes (8 x nvidia.com/gpu, product label, NoSchedule taint)."""
    docs = []
    for i in range(2):
        docs.append(node_manifest(f"kwok-cpu-{i}", cpu="16", memory="64Gi", gpus=0))
    for i in range(2):
        docs.append(node_manifest(f"kwok-gpu-{i}", cpu="64", memory="512Gi", gpus=8))
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


def node_manifest(name: str, cpu: str, memory: str, gpus: int) -> dict[str, object]:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        "node.kubernetes.io/instance-type": "gpu-a100x8" if gpus else "cpu-16",
    }
    capacity = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "200Gi"}
    spec: dict[str, object] = {}
    if gpus:
        labels["nvidia.com/gpu.present"] = "true"
        labels["nvidia.com/gpu.product"] = "NVIDIA-A100-SXM4-80GB"
        labels["nvidia.com/gpu.count"] = str(gpus)
        capacity["nvidia.com/gpu"] = str(gpus)
        spec["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": spec,
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def cluster_role_binding(role: str, subject: dict[str, str], name: str = "") -> dict[str, object]:
    """A ClusterRoleBinding of ``role`` to one subject (named ``name``, or as the role)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name or role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [subject],
    }


API_RBAC: list[dict[str, object]] = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "kubeforge-api-local"},
        "rules": [
            {
                "apiGroups": ["authentication.k8s.io"],
                "resources": ["tokenreviews"],
                "verbs": ["create"],
            },
            # a service account caller (system:serviceaccount:<ns>:<name>) is impersonated as
            # that service account, which the apiserver authorises on `serviceaccounts`
            {
                "apiGroups": [""],
                "resources": ["users", "groups", "serviceaccounts"],
                "verbs": ["impersonate"],
            },
            # namespace names, for the namespaces a caller may use (filtered per caller)
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]},
            # the Kueue ClusterQueue behind a LocalQueue the caller can read (cluster-scoped)
            {"apiGroups": ["kueue.x-k8s.io"], "resources": ["clusterqueues"], "verbs": ["get"]},
            {
                "apiGroups": ["authentication.k8s.io"],
                "resources": ["userextras/scopes", "uids"],
                "verbs": ["impersonate"],
            },
        ],
    },
    cluster_role_binding(
        "kubeforge-api-local",
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kubeforge-api"},
    ),
]


def team_rbac() -> str:
    items: list[dict[str, object]] = list(API_RBAC)
    for ns, user in TEAMS.items():
        items.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        items.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": f"{user}-edit", "namespace": ns},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "edit",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            }
        )
    items.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "equipe-a-view", "namespace": "team-a"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "équipe-a"}
            ],
        }
    )
    items += NODE_RBAC
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


# CoreDNS on the real node reads Services, EndpointSlices, namespaces and pods
NODE_RBAC: list[dict[str, object]] = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "kubeforge-local-coredns"},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["services", "pods", "namespaces"],
                "verbs": ["list", "watch"],
            },
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["list", "watch"],
            },
        ],
    },
    cluster_role_binding(
        "kubeforge-local-coredns",
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "coredns"},
    ),
]


# the restricted Pod Security Standard's pod-level settings of the system pods on the real node
# (ON_REAL_NODE, from kubeforge_labs.kit, steers them there)
RESTRICTED = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532}


def system_deployment(
    name: str,
    namespace: str,
    labels: dict[str, str],
    container: dict[str, Any],
    service_account: str = "",
    volumes: list[dict[str, Any]] | None = None,
    selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One replica of a system component on the real node: its image imported (never pulled),
    restricted, read-only root filesystem, no capabilities."""
    pod: dict[str, Any] = {
        **ON_REAL_NODE,
        "serviceAccountName": service_account or name,
        "securityContext": RESTRICTED,
        "containers": [
            {
                "imagePullPolicy": "Never",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "readOnlyRootFilesystem": True,
                },
                **container,
            }
        ],
    }
    if volumes:
        pod["volumes"] = volumes
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector or labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }

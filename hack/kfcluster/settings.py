"""Where the local control plane lives and what it is made of: paths, ports, the binaries and
their modules, kwok's stages, the users and teams, the storage class, the components."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


HACK = REPO / "hack"


TOOLS = HACK / "tools"


CACHE = Path(
    os.environ.get("KUBEFORGE_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kubeforge"
)


STATE = Path(os.environ.get("KUBEFORGE_CLUSTER_DIR", REPO / ".cache" / "cluster"))


APISERVER_PORT = int(os.environ.get("KUBEFORGE_APISERVER_PORT", "16443"))


ETCD_PORT = int(os.environ.get("KUBEFORGE_ETCD_PORT", "12379"))


SERVICE_CIDR = "10.96.0.0/16"


@dataclass(frozen=True)
class RealNode:
    """The real node's names and addresses (hack/kfcluster/node.py)."""

    name: str = "kf-node-0"
    bridge: str = "kubeforge0"
    pod_subnet: str = "10.88.0.0/24"
    gateway: str = "10.88.0.1"  # the bridge's address on the host: CoreDNS and the apiserver relay
    prefix: int = 24
    # the node's InternalIP, where the kubelet listens and the apiserver reaches it: the bridge's
    # address (a loopback address is not taken as a node address)
    node_ip: str = "10.88.0.1"
    kubelet_port: int = int(os.environ.get("KUBEFORGE_KUBELET_PORT", "10250"))
    cgroup_root: str = "kubeforge"
    volumes: int = 24  # local PersistentVolumes of StorageClass real-node

    @property
    def user(self) -> str:
        return f"system:node:{self.name}"


NODE = RealNode()


# binary -> (tool module under hack/tools, Go package)
BINARIES: dict[str, tuple[str, str]] = {
    "etcd": ("etcd", "go.etcd.io/etcd/server/v3"),
    "kube-apiserver": ("k8s", "k8s.io/kubernetes/cmd/kube-apiserver"),
    "kube-controller-manager": ("k8s", "k8s.io/kubernetes/cmd/kube-controller-manager"),
    "kube-scheduler": ("k8s", "k8s.io/kubernetes/cmd/kube-scheduler"),
    "kubectl": ("k8s", "k8s.io/kubernetes/cmd/kubectl"),
    "kubelet": ("k8s", "k8s.io/kubernetes/cmd/kubelet"),
    "kube-proxy": ("k8s", "k8s.io/kubernetes/cmd/kube-proxy"),
    "coredns": ("coredns", "github.com/coredns/coredns"),
    "prometheus-operator": (
        "prometheus-operator",
        "github.com/prometheus-operator/prometheus-operator/cmd/operator",
    ),
    "prometheus-config-reloader": (
        "prometheus-operator",
        "github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader",
    ),
    # with Kubernetes service discovery (the configuration prometheus-operator writes uses it);
    # not named prometheus: the tests' labs run Debian's from PATH
    "prometheus-kubernetes": ("prometheus", "github.com/prometheus/prometheus/cmd/prometheus"),
    # KServe's controller manager (with its webhooks) and its agent (the request logger sidecar)
    "kserve-manager": ("kserve", "github.com/kserve/kserve/cmd/manager"),
    "kserve-agent": ("kserve", "github.com/kserve/kserve/cmd/agent"),
    # KServe's LLMInferenceService controller (vLLM serving; a binary of its own upstream too)
    "kserve-llmisvc": ("kserve", "github.com/kserve/kserve/cmd/llmisvc"),
    # the Gateway API implementation (controller and data plane in one binary)
    "traefik": ("traefik", "github.com/traefik/traefik/v3/cmd/traefik"),
    # Kueue's controller manager: quota, admission and preemption (localcluster.py kueue up)
    "kueue": ("kueue", "sigs.k8s.io/kueue/cmd/kueue"),
    # Kubeflow Trainer v2 (TrainJobs: multi-node FineTuneJobs) and JobSet, which runs them
    "trainer-controller-manager": (
        "kueue",
        "github.com/kubeflow/trainer/v2/cmd/trainer-controller-manager",
    ),
    "jobset": ("jobset", "sigs.k8s.io/jobset"),
    "kwok": ("kwok", "sigs.k8s.io/kwok/cmd/kwok"),
    "helm": ("helm", "helm.sh/helm/v3/cmd/helm"),
}


# Go build tags of some binaries
BUILD_TAGS = {"prometheus-kubernetes": "remove_all_sd,enable_kubernetes_sd"}


# kwok's own stage definitions, taken from the pinned kwok module: nodes become Ready and keep a
# lease; pods become Running, and deleted pods go away.
KWOK_STAGES = [
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
]


# ours: pods of Jobs then Succeeded, or Failed when their container sets KWOK_SIMULATE_FAILURE
PROJECT_STAGES = ["hack/kwok-stages/pod-complete.yaml"]


USERS = {  # name -> groups; RBAC for user-a/user-b is created in their namespaces on start
    "admin": ["system:masters"],
    "user-a": ["kubeforge:users"],
    "user-b": ["kubeforge:users"],
    "system:kube-controller-manager": [],
    "system:kube-scheduler": [],
    "kwok": ["system:masters"],
    # the operator when it runs outside the cluster (tests, demo, benchmarks); a user of its own
    # so that the audit log tells its requests apart
    "kubeforge-operator": ["system:masters"],
    # the REST API outside the cluster: it may only review tokens and impersonate (see
    # team_rbac); everything else it does as the caller
    "kubeforge-api": [],
    # a person whose user and group names are not ASCII (as OIDC providers send them): may view
    # team-a through their group
    "zoë": ["kubeforge:users", "équipe-a"],
    # the real node: its kubelet (the Node authorizer and NodeRestriction confine it to its own
    # node and pods), kube-proxy (bound to system:node-proxier by the bootstrap RBAC) and CoreDNS
    NODE.user: ["system:nodes"],
    "system:kube-proxy": [],
    "coredns": [],
}


TEAMS = {"team-a": "user-a", "team-b": "user-b"}


# The default StorageClass: kube-controller-manager's own hostPath provisioner creates and deletes
# the volumes (under /tmp/hostpath_pv), so PVCs bind and pods that mount them get scheduled.
STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {
        "name": "standard",
        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
    },
    "provisioner": "kubernetes.io/host-path",
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "Immediate",
}


COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]


class ClusterError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[localcluster] {msg}", file=sys.stderr, flush=True)


# Every write request (not reads) is logged with its user and object, at Metadata level: the
# tests and benchmarks count the operator's writes from it. Every request of the service accounts
# of kubeforge-system (where the tests install the Helm chart) is logged, reads too: the chart's
# RBAC test checks each of the operator's calls against its ClusterRole.
CHART_NAMESPACE = "kubeforge-system"


AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "userGroups": [f"system:serviceaccounts:{CHART_NAMESPACE}"]},
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "None"},
    ],
}

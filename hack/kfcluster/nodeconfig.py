"""The real node's configuration documents: containerd's (CRI plugin, runc, CNI), the CNI bridge
network's, the kubelet's and kube-proxy's. Each setting that departs from the defaults says why."""

from __future__ import annotations

from pathlib import Path

from kfcluster.images import PAUSE_IMAGE
from kfcluster.settings import CACHE, NODE, STATE

NODE_STATE = STATE / "node"
SOCKET = NODE_STATE / "containerd" / "containerd.sock"
# containerd's root (its content store, unpacked snapshots and metadata) outlives the node, like
# the cached images it is filled from: an image is imported and unpacked once per machine, not
# at every start (the node's images take about a minute to import, the trainer's another). `down`
# removes the containers it holds; `localcluster.py down --images` removes it.
IMAGE_STORE = CACHE / "node-containerd"
KUBE_PROXY_HEALTHZ = "127.0.0.1:10256"


def containerd_config() -> str:
    root = NODE_STATE / "containerd"
    cni = NODE_STATE / "cni"
    return f"""version = 2
root = "{IMAGE_STORE}"
state = "{root / "state"}"

[grpc]
  address = "{SOCKET}"

[ttrpc]
  address = "{SOCKET}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: the pause container's -998 score makes runc fail
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni / "net.d"}"
"""


def cni_config() -> dict[str, object]:
    return {
        "cniVersion": "0.4.0",
        "name": "kubeforge",
        "plugins": [
            {
                "type": "bridge",
                "bridge": NODE.bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": NODE.pod_subnet, "gateway": NODE.gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(NODE_STATE / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config() -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE.node_ip,
        "port": NODE.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": NODE.kubelet_port + 8,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(STATE / "pki" / "kubelet-client-ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{SOCKET}",
        # the VM has cgroup v1 (a hybrid cgroup2 holds only hugetlb); 1.35 refuses it by default
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{NODE.cgroup_root}",
        "clusterDNS": [NODE.gateway],
        "clusterDomain": "cluster.local",
        "podLogsDir": str(NODE_STATE / "pod-logs"),
        "registerWithTaints": [
            {"key": "kubeforge.io/node", "value": "real", "effect": "NoSchedule"}
        ],
        # imported images cannot be pulled again: the image GC must never remove them
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "200Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "serializeImagePulls": False,
        "resolvConf": "/etc/resolv.conf",
        "shutdownGracePeriod": "0s",
        "maxPods": 60,
        # a changed Secret or ConfigMap reaches a pod's volume at the pod's next sync: with the
        # default 1m, Prometheus's new configuration (the Secret prometheus-operator writes for a
        # new ServiceMonitor or PrometheusRule) waited up to a minute before a drift alert could
        # fire; one node of a few dozen pods syncs every 10 s at little cost
        "syncFrequency": "10s",
    }


def kube_proxy_config(kubeconfig: object) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE.name,
        # the node's IP, known without waiting for the Node object
        "bindAddress": NODE.node_ip,
        "mode": "iptables",
        "clusterCIDR": NODE.pod_subnet,
        "healthzBindAddress": KUBE_PROXY_HEALTHZ,
        "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": [f"{NODE.gateway}/32"],
        # leave the host's conntrack and route_localnet settings alone
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
    }


REAL_NODE_STORAGE_CLASS: dict[str, object] = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": "real-node"},
    "provisioner": "kubernetes.io/no-provisioner",
    "volumeBindingMode": "WaitForFirstConsumer",
    "reclaimPolicy": "Retain",
}


def local_volume(name: str, path: Path) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"kubeforge.io/node": "real"}},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "real-node",
            "local": {"path": str(path)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [NODE.name],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }

"""Operator settings, from environment variables prefixed KUBEFORGE_OPERATOR_."""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBEFORGE_OPERATOR_", extra="ignore")

    namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces to watch (glob patterns allowed). Empty: the whole cluster. "
        "Teams are cluster-scoped: the operator manages those whose namespace (the Team's name) "
        "the patterns cover.",
    )
    metrics_host: str = Field(default="0.0.0.0", description="Address of the /metrics server.")  # noqa: S104
    metrics_port: int = Field(default=8080, ge=0, le=65535, description="Port of /metrics.")
    liveness_host: str = Field(default="0.0.0.0", description="Address of /healthz.")  # noqa: S104
    liveness_port: int = Field(default=8081, ge=1, le=65535, description="Port of /healthz.")
    resync_seconds: float = Field(
        default=60, gt=0, description="Every object is reconciled at least this often."
    )
    # kopf's watch streams can go silent without an error (kopf issues 585, 957, 1120); bounded
    # server- and client-side timeouts make it re-list instead of waiting forever.
    watch_server_timeout: int = Field(default=300, gt=0)
    watch_client_timeout: int = Field(default=330, gt=0)
    watch_connect_timeout: int = Field(default=30, gt=0)
    api_namespace: str = Field(
        default="kubeforge-system",
        description="Namespace of the kubeforge API (and this operator), the one place outside "
        "a Workbench's or drift service's own namespace that may reach it.",
    )
    monitoring_namespaces: list[str] = Field(
        default_factory=lambda: ["monitoring"],
        description="Namespaces whose Prometheus may scrape the drift services (their "
        "NetworkPolicy admits them).",
    )
    activity_url_template: str = Field(
        default="http://{name}.{namespace}.svc{path}",
        description="Where the culler reads a Workbench's activity; {name}, {namespace} and "
        "{path} (the probe path) are substituted.",
    )
    platform_config: Path | None = Field(
        default=None,
        description="YAML file with the notebook image catalog and the hardware profiles "
        "(kubeforge_crds.platform.PlatformConfig); re-read when it changes.",
    )
    volume_quiet_seconds: float = Field(
        default=30,
        ge=0,
        le=120,  # the wait that is a failure (VolumeNotBound) is two minutes
        description="How long a Workbench's pod may wait for its home volume's claim to be "
        "bound (an Immediate StorageClass's provisioner at work) before the Workbench says "
        "WaitingForVolume; until then it is PodPending, as a pod not made yet, and the wait "
        "costs no status write. At most 120 (the wait after which it is VolumeNotBound).",
    )
    max_workers: int = Field(
        default=8, ge=1, le=256, description="Threads that run reconciles concurrently."
    )
    trainer_image: str = Field(
        default="ghcr.io/kubeforge/kubeforge:0.1.0",
        description="Image of FineTuneJob pods (backend job): kubeforge with its ML extras.",
    )
    training_runtime: str = Field(
        default="kubeforge-torch",
        description="Kubeflow Trainer ClusterTrainingRuntime of multi-node FineTuneJobs "
        "(resources.nodes > 1, backend job): their TrainJobs name it. The chart installs it "
        "(trainer.trainingRuntime).",
    )
    kfp_host: str | None = Field(
        default=None,
        description="URL of the Kubeflow Pipelines API for FineTuneJobs with backend kfp.",
    )
    kfp_experiment: str = Field(default="kubeforge", description="KFP experiment of the runs.")
    local_runs_dir: Path = Field(
        default=Path.home() / ".cache" / "kubeforge" / "finetune-runs",
        description="Where backend local keeps each run's work directory, checkpoints and log.",
    )
    local_python: str | None = Field(
        default=None,
        description="Interpreter that runs backend local pipelines (default: the operator's).",
    )
    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus HTTP API the canary analysis queries, e.g. "
        "http://prometheus-operated.monitoring:9090. Without it every analysis has no data, "
        "so rollouts with metrics are rolled back.",
    )
    prometheus_scrape_interval: float = Field(
        default=30,
        gt=0,
        description="Scrape interval of the runtimes' metrics (seconds): rate() ranges span at "
        "least four, and a failed analysis is confirmed one scrape later.",
    )
    kserve_mode: Literal["auto", "Standard", "Serverless"] = Field(
        default="auto",
        description="KServe deployment mode of ModelServers. Standard: kubeforge splits a "
        "canary's traffic with its own Gateway API HTTPRoute; Serverless: KServe (Knative) "
        "does, with canaryTrafficPercent. auto: KServe's own default "
        "(deploy.defaultDeploymentMode in its inferenceservice-config), Standard if unreadable.",
    )
    kserve_namespace: str = Field(
        default="kserve", description="Namespace of KServe's inferenceservice-config."
    )
    gateway: str = Field(
        default="kserve/kserve-ingress-gateway",
        description="namespace/name of the Gateway the ModelServers' HTTPRoutes attach to "
        "(Standard mode); KServe's default ingress Gateway.",
    )
    ingress_domain: str | None = Field(
        default=None,
        description="Domain of the ModelServers' hosts (<name>-<namespace>.<domain>); unset, "
        "KServe's ingressDomain, else example.com.",
    )
    drift_image: str = Field(
        default="ghcr.io/kubeforge/kubeforge:0.1.0",
        description="Image of the drift service (DriftMonitor): kubeforge with its data and "
        "serving extras.",
    )
    evaluation_image: str = Field(
        default="ghcr.io/kubeforge/kubeforge-runtime:0.1.0",
        description="Image of the ModelServers' evaluation Jobs (spec.rollout.evaluation): "
        "kubeforge with its serving extras (the openai client, rouge-score).",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None,
        description="imagePullPolicy of the containers kubeforge runs (notebooks, training, "
        "drift services); unset, Kubernetes' default. Never where images are imported into "
        "the nodes instead of pulled (the local cluster's real node has no registry).",
    )
    drift_status_url_template: str = Field(
        default="http://{service}.{namespace}.svc:8080",
        description="Where the operator reads a drift service's /status; {service}, {name} and "
        "{namespace} are substituted.",
    )
    leader_election: bool = Field(
        default=False,
        description="Run as one of several replicas: only the holder of the Lease "
        "leader_election_namespace/leader_election_lease reconciles; the others wait to take "
        "over. The Helm chart turns it on.",
    )
    leader_election_namespace: str = Field(
        default="kubeforge-system",
        description="Namespace of the leader Lease (the chart passes the pod's namespace).",
    )
    leader_election_lease: str = Field(default="kubeforge-operator", description="Lease name.")
    leader_election_identity: str = Field(
        default_factory=lambda: f"{socket.gethostname()}_{os.getpid()}",
        description="This replica's name in the Lease (the chart passes the pod's name).",
    )
    lease_seconds: int = Field(
        default=15, ge=2, le=300, description="A silent leader is replaced after this long."
    )
    renew_deadline_seconds: float = Field(
        default=10, gt=0, description="A leader that could not renew for this long exits."
    )
    retry_period_seconds: float = Field(
        default=2, gt=0, description="How often leaders renew and standbys try to take over."
    )
    log_format: Literal["json", "plain"] = Field(default="json")
    log_level: Literal["DEBUG", "INFO", "WARNING"] = Field(default="INFO")


@cache
def get_settings() -> OperatorSettings:
    """The process's settings, read from the environment once."""
    return OperatorSettings()

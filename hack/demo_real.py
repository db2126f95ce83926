"""`make demo` on the embedded cluster's real node: kubeforge installed by its Helm chart (the
operator and the API as pods of the images built here), examples/local applied, and each kind
followed until its pods really run: a Jupyter server, a CPU fine-tuning Job, a drift service that
receives shifted traffic and whose alert fires in the Prometheus that prometheus-operator runs.

The ModelServer is the exception, and the demo says so: KServe's controller does not run on the
embedded cluster yet, so its InferenceService is written but never reconciled.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from typing import Any

import localcluster as lc
from kfcluster import monitoring, node

from kubeforge_labs import helm, kit

REPO = lc.REPO
LOCAL_EXAMPLES = REPO / "examples" / "local"
# a release of the demo's own: never one a user installed as `kubeforge` (values-local.yaml)
RELEASE = "kubeforge-demo"
REAL_NODE = "kf-node-0"
DRIFT_ALERT = "KubeforgeDriftDetected"  # the PrometheusRule the operator writes per monitor


def available(kubeconfig: str) -> bool:
    """Whether the cluster has the embedded real node, Ready."""
    if not node.is_running():
        return False
    out = kit.kubectl(
        "get", "node", REAL_NODE, "-o", "json", kubeconfig=kubeconfig,
        binary=lc.bin_dir() / "kubectl", check=False,
    )  # fmt: skip
    if not out:
        return False
    conditions = json.loads(out)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class Demo:
    def __init__(self, kubeconfig: str, namespace: str, system: str, say: Callable[[str], None]):
        self.kubeconfig, self.namespace, self.system, self.say = kubeconfig, namespace, system, say

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        try:
            return kit.kubectl(
                *args, kubeconfig=self.kubeconfig, binary=lc.bin_dir() / "kubectl",
                check=check, stdin=stdin, timeout=600,
            )  # fmt: skip
        except kit.KubectlError as err:
            raise SystemExit(str(err)) from None

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", kind, name, "-n", self.namespace, "-o", "json"))

    def run(self) -> dict[str, Any]:
        """Everything up to the overview; returns the ModelServer's state for the summary."""
        self.say("Building kubeforge's images and importing them into the real node (cached)")
        subprocess.run(
            [sys.executable, str(REPO / "hack" / "localcluster.py"), "images"], check=True
        )
        self.say(
            f"Installing kubeforge with its Helm chart: release {RELEASE} in {self.system}, "
            f"the operator and the API as pods, reconciling namespace {self.namespace}"
        )
        try:
            helm.install_local(lc.bin_dir(), self.kubeconfig, RELEASE, self.system, self.namespace)
        except helm.HelmError as err:
            raise SystemExit(f"{err}\nsee: kubectl get pods -n {self.system}") from None
        self.kubectl("create", "namespace", self.namespace, check=False)
        node.recycle_volumes()  # volumes an earlier demo or test released
        self.say(
            "Seeding the volumes: the tiny GPT-2 and the ticket dataset "
            "(examples/local/00-data.yaml)"
        )
        self.kubectl("apply", "-n", self.namespace, "-f", str(LOCAL_EXAMPLES / "00-data.yaml"))
        self.wait_job("seed-data")
        self.say(f"Applying examples/local into namespace {self.namespace}")
        print(self.kubectl("apply", "-n", self.namespace, "-f", str(LOCAL_EXAMPLES)), end="")
        self.wait_condition("workbench", "notebook", "Ready", 300)
        self.say("Workbench notebook: Jupyter Server running; its status and activity are real")
        ftj = self.wait_for("finetunejob", "support-bot-v1", 600, finished)
        if ftj["status"].get("phase") != "Succeeded":
            raise SystemExit(f"FineTuneJob support-bot-v1 failed: {reason_of(ftj, 'Succeeded')}")
        shown = {k: ftj["status"].get(k) for k in ("model", "metrics", "datasetDigest")}
        self.say("FineTuneJob support-bot-v1: trained in a real pod, version registered")
        print(json.dumps(shown, indent=2))
        self.wait_condition("driftmonitor", "support-bot-drift", "ServiceReady", 300)
        self.shifted_traffic()
        return self.get("modelserver", "support-bot")

    def shifted_traffic(self) -> None:
        from kubeforge_labs.drift import in_pod_sender
        from kubeforge_pipelines.tinymodel import support_tickets

        self.say(
            "Drift: 200 tickets of only vpn and email sent to the drift service (from the "
            "notebook's pod, as KServe's logger would post them)"
        )
        url = f"http://support-bot-drift-drift.{self.namespace}.svc:8080/"
        rows = "".join(
            json.dumps(r) + "\n" for r in support_tickets(200, 3, products=["vpn", "email"])
        )
        sender = in_pod_sender(url, "support-bot", self.namespace)
        self.kubectl("exec", "-i", "-n", self.namespace, "notebook-0", "--", *sender, stdin=rows)
        drifted = self.wait_for("driftmonitor", "support-bot-drift", 180, has_drifted)
        scores = drifted["status"].get("scores") or {}
        print(json.dumps({"phase": drifted["status"]["phase"], "scores": scores}, indent=2))
        alert = self.firing_alert(120)
        self.say(f"Prometheus (prometheus-operator's): {alert} firing for support-bot-drift")

    def firing_alert(self, timeout: float) -> str:
        url = f"{monitoring.api_url()}/api/v1/alerts"

        def firing() -> str | None:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
                alerts = json.loads(resp.read())["data"]["alerts"]
            names = [
                a["labels"]["alertname"]
                for a in alerts
                if a["labels"].get("namespace") == self.namespace
                and a["labels"].get("alertname") == DRIFT_ALERT
                and a["labels"].get("kubeforge_monitor") == "support-bot-drift"
                and a["state"] == "firing"
            ]
            return names[0] if names else None

        return kit.wait_for(f"{DRIFT_ALERT} firing in Prometheus", firing, timeout, 2)

    def wait_job(self, name: str, timeout: float = 300) -> None:
        def done() -> bool | None:
            job = self.get("job", name)
            if condition(job, "Failed").get("status") == "True":  # its retries used up
                logs = self.kubectl("logs", "-n", self.namespace, f"job/{name}", check=False)
                raise SystemExit(f"Job {name} failed ({reason_of(job, 'Failed')}):\n{logs}")
            return condition(job, "Complete").get("status") == "True" or None

        kit.wait_for(f"Job {name} complete", done, timeout, 1)

    def wait_for(
        self, kind: str, name: str, timeout: float, test: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        try:
            return kit.wait_for(
                f"{kind} {name}",
                lambda: obj if test(obj := self.get(kind, name)) else None,
                timeout,
                2,
            )
        except kit.WaitTimeoutError:
            obj = self.get(kind, name)
            raise SystemExit(
                f"{kind} {name} after {timeout:.0f}s: {json.dumps(obj.get('status'), indent=2)}\n"
                f"see: kubectl describe {kind} {name} -n {self.namespace}; "
                f"kubectl logs -n {self.system} deploy/{RELEASE}-operator"
            ) from None

    def wait_condition(self, kind: str, name: str, type_: str, timeout: float) -> None:
        self.wait_for(kind, name, timeout, lambda o: condition(o, type_).get("status") == "True")

    def next_steps(self, modelserver: dict[str, Any]) -> None:
        ns = self.namespace
        ready = condition(modelserver, "Ready")
        print(
            "ModelServer support-bot is not served here: "
            f"Ready={ready.get('status')} ({ready.get('reason')}: {ready.get('message')}).\n"
            "  KServe's controller does not run on the embedded cluster yet, so the "
            "InferenceService the\n  operator wrote is never reconciled; `make loop-demo` shows "
            "the canary with a KServe stand-in."
        )
        print(self.kubectl("get", "pods", "-n", ns, "-o", "wide"), end="")
        hints = [
            ('eval "$(python3 hack/localcluster.py env)"', ""),
            (f"kubectl get pods -n {self.system}", "kubeforge's own pods"),
            (f"kubectl logs -n {ns} job/support-bot-v1-train", "the training run"),
            (f"kubectl port-forward -n {ns} svc/notebook 8888:80", "Jupyter Server's API:"),
            ("curl http://127.0.0.1:8888/api/status", "its last activity (no web UI in it)"),
            (f"kubectl describe driftmonitor support-bot-drift -n {ns}", "scores and Events"),
            (f"kubectl exec -n {ns} notebook-0 -- ls /home/jovyan", "the notebook's home"),
        ]
        width = max(len(command) for command, _ in hints)
        print("What to look at next:")
        for command, note in hints:
            print(f"  {command.ljust(width)}  # {note}" if note else f"  {command}")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return {}


def reason_of(obj: dict[str, Any], type_: str) -> str:
    c = condition(obj, type_)
    return f"{c.get('reason')}: {c.get('message')}"


def finished(obj: dict[str, Any]) -> bool:
    return obj.get("status", {}).get("phase") in ("Succeeded", "Failed")


def has_drifted(obj: dict[str, Any]) -> bool:
    return obj.get("status", {}).get("phase") == "Drifted"


def down(kubeconfig: str, namespace: str, system: str) -> None:
    """The demo's namespace (while the operator still runs to release its objects), then the
    release."""
    kit.kubectl(
        "delete", "namespace", namespace, "--ignore-not-found", "--timeout=180s",
        kubeconfig=kubeconfig, binary=lc.bin_dir() / "kubectl", check=False, timeout=240,
    )  # fmt: skip
    helm.uninstall_local(lc.bin_dir(), kubeconfig, RELEASE, system)
    if node.is_running():
        node.recycle_volumes(released_by=namespace)

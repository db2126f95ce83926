"""`make demo` on the embedded cluster's real node: kubeforge installed by its Helm chart (the
operator and the API as pods of the images built here), examples/local applied, and each kind
followed until its pods really run: a Jupyter server, a CPU fine-tuning Job, a ModelServer that
KServe's own controller (v0.20, Standard mode) serves behind a real Gateway (Traefik), and a
drift service that receives shifted traffic through the Gateway and whose alert fires in the
Prometheus that prometheus-operator runs. Then the closed loop: the DriftMonitor's retraining
run, and its version rolled out as a canary under live traffic and promoted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from typing import IO, Any
from urllib.parse import urlsplit

import localcluster as lc
from kfcluster import monitoring, node

from kubeforge_crds.contracts.labels import LIVE_DATA_ANNOTATION, TRIGGER_ANNOTATION
from kubeforge_labs import helm, kit
from kubeforge_operator.modelserver.traffic import route_canary_weight

REPO = lc.REPO
LOCAL_EXAMPLES = REPO / "examples" / "local"
# a release of the demo's own: never one a user installed as `kubeforge` (values-local.yaml)
RELEASE = "kubeforge-demo"
REAL_NODE = "kf-node-0"
DRIFT_MONITOR = "support-bot-drift"
DRIFT_ALERT = "KubeforgeDriftDetected"  # the PrometheusRule the operator writes per monitor
GATEWAY_URL = "http://kserve-ingress-gateway.kserve.svc"  # localcluster.py kserve up
LOCALCLUSTER = [sys.executable, str(REPO / "hack" / "localcluster.py")]

# Posts the JSON rows on stdin to the Gateway with the InferenceService's host, ten instances a
# request (KServe's agent logs each request and response to the drift service); prints what
# was sent, the revision that answered and the last answer.
SEND = """
import json, sys, urllib.request
url, host = sys.argv[1:3]
rows = [json.loads(line) for line in sys.stdin if line.strip()]
headers = {"Host": host, "content-type": "application/json"}
for start in range(0, len(rows), 10):
    body = json.dumps({"instances": rows[start:start + 10]}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=120) as resp:
        revision = resp.headers.get("x-kubeforge-revision")
        answers = json.loads(resp.read())["predictions"]
print(json.dumps({"sent": len(rows), "revision": revision, "answer": answers[-1]}))
"""

# Requests through the Gateway at a steady rate, one ticket each (from stdin, in turn), for at
# most SECONDS; one line per answer: time, the revision that answered, HTTP status.
LOAD = """
import json, sys, time, urllib.error, urllib.request
url, host, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
rows = [json.loads(line) for line in sys.stdin if line.strip()]
headers = {"Host": host, "content-type": "application/json"}
end, i = time.time() + seconds, 0
while time.time() < end:
    started = time.time()
    body = json.dumps({"instances": [rows[i % len(rows)]]}).encode()
    i += 1
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=30) as r:
            code, rev = r.status, r.headers.get("x-kubeforge-revision", "-")
    except urllib.error.HTTPError as err:
        code, rev = err.code, err.headers.get("x-kubeforge-revision", "-")
    except OSError:
        code, rev = 0, "-"
    print(f"{started:.3f} {rev} {code}", flush=True)
    time.sleep(max(0.0, 1 / rate - (time.time() - started)))
"""


# The load's last argument, by which STOP_LOAD finds it among the pod's processes (STOP_LOAD's
# own command line holds the marker only in two halves).
LOAD_MARKER = "kubeforge-demo-load"
STOP_LOAD = """
import os, signal
marker = b"kubeforge-demo-" + b"load"
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if marker in open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0"):
            os.kill(int(pid), signal.SIGTERM)
    except OSError:
        pass
"""


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
        # KServe first: its webhooks check the ClusterServingRuntimes the chart installs
        self.start_kserve()
        self.say(
            f"Installing kubeforge with its Helm chart: release {RELEASE} in {self.system}, "
            f"the operator and the API as pods, reconciling namespace {self.namespace}"
        )
        try:
            helm.install_local(
                lc.bin_dir(), self.kubeconfig, RELEASE, self.system, self.namespace,
                sets=["kserve.servingRuntime.enabled=true"],
            )  # fmt: skip
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
        served = self.serve()
        host = urlsplit(served["status"]["url"]).netloc
        self.shifted_traffic(host)
        return self.close_the_loop(host, served["status"]["stable"]["revision"])

    def start_kserve(self) -> None:
        self.say(
            "Starting KServe's controller (v0.20, Standard mode) and a Gateway API data plane "
            "(Traefik) on the real node"
        )
        subprocess.run([*LOCALCLUSTER, "kserve", "up"], check=True)

    def serve(self) -> dict[str, Any]:
        """The ModelServer once KServe reports it ready with the drift service's logger on
        its predictor, and a ticket through the Gateway."""
        self.wait_condition("modelserver", "support-bot", "Ready", 420)
        self.wait_for("inferenceservice", "support-bot", 120, logs_requests)
        self.kubectl(
            "rollout", "status", "deployment/support-bot-predictor", "-n", self.namespace,
            "--timeout=300s",
        )  # fmt: skip
        served = self.get("modelserver", "support-bot")
        self.say(
            f"ModelServer support-bot served by KServe at {served['status']['url']}; a ticket "
            "through the Gateway (from the notebook's pod):"
        )
        from kubeforge_pipelines.tinymodel import support_tickets

        ticket = support_tickets(1, 7, products=["vpn"])[0]
        ticket["text"] = ticket["text"].split("resolution:")[0] + "resolution:"
        answer = self.send(urlsplit(served["status"]["url"]).netloc, [ticket])
        print(json.dumps({"prompt": ticket["text"], **answer}, indent=2))
        return served

    def send(self, host: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        url = f"{GATEWAY_URL}/v1/models/support-bot:predict"
        out = self.kubectl(
            "exec", "-i", "-n", self.namespace, "notebook-0", "--", "python3", "-c", SEND, url,
            host, stdin="".join(json.dumps(r) + "\n" for r in rows),
        )  # fmt: skip
        return dict(json.loads(out))

    def shifted_traffic(self, host: str) -> None:
        from kubeforge_pipelines.tinymodel import support_tickets

        self.say(
            "Drift: 200 tickets of only vpn and email sent to the model through the Gateway; "
            "KServe's agent logs each request to the drift service"
        )
        sent = self.send(host, support_tickets(200, 3, products=["vpn", "email"]))
        print(json.dumps(sent, indent=2))
        drifted = self.wait_for("driftmonitor", "support-bot-drift", 180, has_drifted)
        status = drifted["status"]
        shown = {k: status.get(k) for k in ("phase", "scores", "payloads")}
        print(json.dumps(shown, indent=2))
        alert = self.firing_alert(120)
        self.say(f"Prometheus (prometheus-operator's): {alert} firing for support-bot-drift")

    def close_the_loop(self, host: str, v1: str) -> dict[str, Any]:
        """The DriftMonitor's retraining run, the version it registers, and that version's
        canary through the Gateway under steady load until KServe serves it alone."""
        name = f"{DRIFT_MONITOR}-retrain-1"  # the monitor numbers its runs
        served = self.get("modelserver", "support-bot")
        if (served["status"].get("stable") or {}).get("fineTuneJob") == name:
            self.say(
                f"The loop closed in an earlier run of the demo (version of {name} serving); "
                "`make demo-down` starts over"
            )
            return served
        self.wait_retrain(name)
        self.say(
            f"Closing the loop: the DriftMonitor started FineTuneJob {name} (the training data "
            "plus the drifted window); a client in the notebook's pod sends 2 tickets/s from now"
        )
        with tempfile.TemporaryFile("w+") as log, tempfile.TemporaryFile("w+") as errors:
            load = self.start_load(host, log, errors)
            try:
                ftj, served = self.roll_out(name, v1)
            finally:
                self.stop_load(load)
            log.seek(0)
            answered = answers_by_revision(log.read())
            if not answered:
                errors.seek(0)
                print(f"the client got no answer: {errors.read()[-2000:]}", file=sys.stderr)
        status = served["status"]
        annotations = ftj["metadata"].get("annotations", {})
        print(
            json.dumps(
                {
                    "retrain": name,
                    "trigger": annotations.get(TRIGGER_ANNOTATION),
                    "liveData": annotations.get(LIVE_DATA_ANNOTATION),
                    "version": ftj["status"]["model"]["version"],
                    "stable": {"before": v1, "after": status["stable"]["revision"]},
                    "decisions": [decision_line(d) for d in status.get("decisions", [])],
                    "answers": answered,
                },
                indent=2,
            )
        )
        return served

    def roll_out(self, name: str, v1: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The retraining run until it registers its version, and the ModelServer until that
        version is promoted and its stable predictor serves it (the hand-over)."""
        ftj = self.wait_for("finetunejob", name, 600, finished)
        if ftj["status"].get("phase") != "Succeeded":
            raise SystemExit(f"FineTuneJob {name} failed: {reason_of(ftj, 'Succeeded')}")
        version = ftj["status"]["model"]["version"]
        self.say(
            f"Version {version} registered; ModelServer support-bot rolls it out as a canary, "
            "each step gated on Prometheus"
        )
        served = self.wait_for("modelserver", "support-bot", 600, rollout_ended(v1))
        if served["status"]["stable"]["revision"] == v1:
            decisions = [decision_line(d) for d in served["status"].get("decisions", [])]
            raise SystemExit(f"version {version} was not promoted:\n" + "\n".join(decisions))
        # the canary keeps the traffic until KServe has rolled the stable predictor over
        self.wait_for("httproute", "support-bot", 300, lambda r: route_canary_weight(r) == 0)
        self.say(
            f"Version {version} promoted: KServe's stable predictor serves it, the loop closed"
        )
        return ftj, served

    def exists(self, kind: str, name: str) -> bool:
        return bool(
            self.kubectl(
                "get", kind, name, "-n", self.namespace, "--ignore-not-found", "-o", "name"
            ).strip()
        )

    def wait_retrain(self, name: str) -> None:
        """The retraining run the DriftMonitor creates on drift; if it does not, what the
        monitor recorded (a failed export of the live data, its cool-down)."""
        try:
            kit.wait_for(f"FineTuneJob {name}", lambda: self.exists("finetunejob", name), 120, 2)
        except kit.WaitTimeoutError:
            monitor = self.get("driftmonitor", DRIFT_MONITOR)
            actions = (monitor.get("status") or {}).get("actions", [])[-3:]
            raise SystemExit(
                f"the DriftMonitor started no retraining run; its last actions: "
                f"{json.dumps(actions, indent=2)}\n"
                f"see: kubectl describe driftmonitor {DRIFT_MONITOR} -n {self.namespace}"
            ) from None

    def start_load(self, host: str, log: IO[str], errors: IO[str]) -> subprocess.Popen[str]:
        from kubeforge_pipelines.tinymodel import support_tickets

        url = f"{GATEWAY_URL}/v1/models/support-bot:predict"
        load = subprocess.Popen(
            [
                str(lc.bin_dir() / "kubectl"), "--kubeconfig", self.kubeconfig, "exec", "-i",
                "-n", self.namespace, "notebook-0", "--", "python3", "-c", LOAD, url, host,
                "2", "1800", LOAD_MARKER,
            ],
            stdin=subprocess.PIPE, stdout=log, stderr=errors, text=True,
        )  # fmt: skip
        assert load.stdin is not None
        load.stdin.write("".join(json.dumps(r) + "\n" for r in support_tickets(50, 11)))
        load.stdin.close()
        return load

    def stop_load(self, load: subprocess.Popen[str]) -> None:
        """The local kubectl and the client in the pod (which may outlive its exec session)."""
        load.terminate()
        try:
            load.wait(30)
        except subprocess.TimeoutExpired:
            load.kill()
            load.wait()
        self.kubectl(
            "exec", "-n", self.namespace, "notebook-0", "--", "python3", "-c", STOP_LOAD,
            check=False,
        )  # fmt: skip

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
        host = urlsplit(modelserver["status"]["url"]).netloc
        print(self.kubectl("get", "pods", "-n", ns, "-o", "wide"), end="")
        hints = [
            ('eval "$(python3 hack/localcluster.py env)"', ""),
            (f"kubectl get pods -n {self.system}", "kubeforge's own pods"),
            (f"kubectl logs -n {ns} job/support-bot-v1-train", "the training run"),
            (f"kubectl get inferenceservice,httproute -n {ns}", "what KServe and the route say"),
            ("kubectl port-forward -n kserve svc/kserve-ingress-gateway 8000:80", "the Gateway:"),
            (
                f"curl -H 'Host: {host}' -d '{{\"instances\": [\"ticket: the vpn fails\"]}}' "
                "http://127.0.0.1:8000/v1/models/support-bot:predict",
                "a prompt",
            ),
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


def logs_requests(isvc: dict[str, Any]) -> bool:
    return bool(isvc["spec"]["predictor"].get("logger", {}).get("url"))


def has_drifted(obj: dict[str, Any]) -> bool:
    return obj.get("status", {}).get("phase") == "Drifted"


def rollout_ended(stable: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a ModelServer serving ``stable`` has promoted a new version or rolled it back."""

    def ended(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        actions = [d.get("action") for d in status.get("decisions", [])]
        promoted = (status.get("stable") or {}).get("revision") not in (None, stable)
        return not status.get("canary") and (promoted or "rollback" in actions)

    return ended


def decision_line(decision: dict[str, Any]) -> str:
    split = decision.get("trafficSplit")
    return f"{decision.get('action')}{f' {split}' if split else ''}: {decision.get('reason')}"


def answers_by_revision(log: str) -> dict[str, dict[str, int]]:
    """{revision: {HTTP status: requests}} from the load's lines."""
    counts: dict[str, dict[str, int]] = {}
    for line in log.splitlines():
        parts = line.split()
        if len(parts) == 3:
            by_code = counts.setdefault(parts[1], {})
            by_code[parts[2]] = by_code.get(parts[2], 0) + 1
    return counts


def down(
    kubeconfig: str,
    namespace: str,
    system: str,
    started_kserve: bool,
    say: Callable[[str], None] = lambda _: None,
) -> None:
    """The demo's namespace (while the operator still runs to release its objects), the
    release, and KServe when the demo started it.

    The namespace's pods are stopped at once, before the namespace goes: everything in it is
    deleted anyway, and the namespace controller, finding pods at its first pass, waits out
    their grace period (30 s) before it looks again. So the workloads go first (no controller
    makes new pods for an object being deleted), then their pods, then the namespace, empty.
    The pods are deleted without a grace period (``--force``): the garbage collector has already
    deleted them with the default 30 s as their owners went, and KServe's agent in each
    predictor sleeps that long on SIGTERM before it exits (for load balancers to see it not
    ready); a shorter grace period asked for afterwards did not stop it sooner here (the
    predictors went 31 s later). The kubelet still stops their containers."""

    def run(*args: str, timeout: float = 60) -> None:
        kit.kubectl(
            *args, kubeconfig=kubeconfig, binary=lc.bin_dir() / "kubectl", check=False,
            timeout=timeout,
        )  # fmt: skip

    workloads = [
        "workbenches,finetunejobs,modelservers,driftmonitors",
        "inferenceservices.serving.kserve.io,jobs,deployments,replicasets,statefulsets",
    ]
    run("delete", ",".join(workloads), "--all", "-n", namespace, "--wait=false")
    run("delete", "pods", "--all", "-n", namespace, "--force", "--grace-period=0")
    run("delete", "namespace", namespace, "--ignore-not-found", "--timeout=180s", timeout=240)
    say(f"Deleted namespace {namespace}")
    helm.uninstall_local(lc.bin_dir(), kubeconfig, RELEASE, system)
    say(f"Uninstalled kubeforge from {system}")
    if started_kserve:
        subprocess.run([*LOCALCLUSTER, "kserve", "down"], check=False)
        say("Stopped KServe")
    if node.is_running():
        node.recycle_volumes(released_by=namespace)

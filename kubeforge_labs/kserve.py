"""A stand-in for KServe's controller, for the process labs and the integration tier's
ModelServer tests only, which run their runtimes as local processes (the e2e tier and `make
demo` run KServe's real controller on the real node). It plays KServe's part and no more: it
reads the InferenceService the operator writes, reports the predictor it names (revision, model URI,
canary share, logger URL) to a callback that routes real traffic to real runtime processes, and
marks the InferenceService Ready for the generation it saw, with a URL.

It is named a stand-in wherever it is used; nothing shipped imports it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config

from kubeforge_crds.contracts.serving import ENV_REVISION, ISVC_API

log = logging.getLogger(__name__)
GROUP, VERSION = ISVC_API.split("/")


@dataclass(frozen=True)
class Predictor:
    """What the InferenceService's predictor asks for."""

    revision: str
    storage_uri: str
    canary_percent: int | None  # None: this revision takes all the traffic
    logger_url: str | None


def predictor_of(isvc: dict[str, Any]) -> Predictor:
    predictor = isvc["spec"]["predictor"]
    env = {e["name"]: e.get("value") for e in predictor["model"].get("env", [])}
    percent = predictor.get("canaryTrafficPercent")
    return Predictor(
        revision=str(env[ENV_REVISION]),
        storage_uri=str(predictor["model"].get("storageUri", "")),
        canary_percent=int(percent) if percent is not None else None,
        logger_url=(predictor.get("logger") or {}).get("url"),
    )


class KServeStandIn:
    """Watches one InferenceService (polling every ``period`` seconds) in a thread of its own."""

    def __init__(
        self,
        kubeconfig: str,
        namespace: str,
        name: str,
        on_predictor: Callable[[Predictor], None],
        period: float = 0.3,
    ) -> None:
        self.api = client.CustomObjectsApi(config.new_client_from_config(kubeconfig))
        self.namespace, self.name, self.on_predictor, self.period = (
            namespace,
            name,
            on_predictor,
            period,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kserve-stand-in", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                isvc = self.api.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, "inferenceservices", self.name
                )
            except client.ApiException:
                continue  # not created yet
            self.on_predictor(predictor_of(isvc))
            self._report_ready(isvc)

    def _report_ready(self, isvc: dict[str, Any]) -> None:
        generation = isvc["metadata"]["generation"]
        if (isvc.get("status") or {}).get("observedGeneration") == generation:
            return
        status = {
            "observedGeneration": generation,
            "url": f"http://{self.name}.{self.namespace}.example.com",
            "conditions": [{"type": "Ready", "status": "True"}],
        }
        self.api.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, "inferenceservices", self.name, {"status": status}
        )

"""The built-in runtime: one model served by kserve's ModelServer (v1 and v2 protocols, text
generation, and for causal LMs the OpenAI-compatible API of ``openai_api``), with the metrics
the canary analysis reads (and, for causal LMs, vLLM's token metrics: ``generation``).

Metrics (on kserve's ``/metrics``), labelled with the ModelServer's namespace, name (``model``),
the revision the operator gave this predictor and the adapter an OpenAI request named (empty for
the base model and v1/v2 requests):

- ``kubeforge_inference_requests_total{namespace, model, revision, adapter, protocol, code}``
- ``kubeforge_inference_request_duration_seconds{namespace, model, revision, adapter, protocol}``

The series for codes 200 and 500 (of each loaded adapter too) exist from the start at 0, so the
first request after a scrape already shows in ``rate()``: an analysis never waits a scrape for a
baseline.

Counting happens in the runtime's own ASGI app in front of kserve's (``InferenceMetrics``), so
requests kserve rejects (400 for a bad body, 500 for a model error) are counted with their real
status code; a request whose client left before it was answered, with 499 (nginx's code for it),
not as an error of the server. That app is also where the access log is written, once a response
has ended (uvicorn writes its line before a response's first byte leaves).
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from kubeforge_runtimes.asgi import send_json
from kubeforge_runtimes.faults import FaultInjector, Faults
from kubeforge_runtimes.labels import ADAPTER_STATE

REVISION_HEADER = b"x-kubeforge-revision"
# the access log: uvicorn's line and logger, written by InferenceMetrics (serve_on)
ACCESS_LOG = logging.getLogger("uvicorn.access")
REQUESTS = Counter(
    "kubeforge_inference_requests",
    "Inference requests by response code.",
    ["namespace", "model", "revision", "adapter", "protocol", "code"],
)
LATENCY = Histogram(
    "kubeforge_inference_request_duration_seconds",
    "Inference request latency, including injected latency.",
    ["namespace", "model", "revision", "adapter", "protocol"],
    # geometric buckets 1.4x apart (5 ms to 30 s): a p95 read from them is within ~20% of the
    # true value, where the usual 1-2.5-5 buckets are off by up to 2.5x and a relative latency
    # check would compare bucket edges, not latencies
    buckets=tuple(round(0.005 * 1.4**i, 6) for i in range(27)),
)

# /v1/models/NAME:predict, /v2/models/NAME[/versions/V]/infer, /v2/models/NAME/generate,
# /openai/v1/completions, /openai/v1/chat/completions
INFERENCE_PATH = re.compile(
    r"^/(?:(?P<v1>v1)/models/(?P<v1_model>[^/:]+):predict|(?P<v2>v2)/models/(?P<v2_model>[^/]+)"
    r"(?:/versions/[^/]+)?/(?:infer|generate)|(?P<openai>openai)/v1/(?:chat/)?completions)$"
)
PROTOCOLS = ("v1", "v2", "openai")
OPENAI_PREFIX = "/openai/v1/"
CLIENT_LEFT = 499  # a request whose client went away before it was answered (nginx's code)


class RuntimeSettings(BaseSettings):
    """From environment variables prefixed KUBEFORGE_RUNTIME_ (the operator sets them on the
    predictor) or the command line."""

    model_config = SettingsConfigDict(env_prefix="KUBEFORGE_RUNTIME_", extra="ignore")

    model_dir: Path = Field(default=Path("/mnt/models"), description="Where KServe put the model.")
    model_name: str = Field(default="model", description="Name in the inference URLs.")
    model_format: str | None = Field(
        default=None, description="transformers, peft or sklearn; found from the files if unset."
    )
    base_model_uri: str | None = Field(
        default=None, description="Base model of a peft adapter (default: from lineage.json)."
    )
    adapters: dict[str, str] = Field(
        default_factory=dict,
        description="LoRA adapters to load on the model (a base model), by the name a request "
        'gives as `model`: JSON {"name": "URI"}, each URI a registered version or an adapter '
        "directory (file://, pvc://claim/path under KUBEFORGE_PVC_ROOT, s3://).",
    )
    namespace: str = Field(default="", description="The ModelServer's namespace (a label).")
    revision: str = Field(default="", description="The revision label of every metric.")
    http_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - the pod's own network namespace
        description="Address to listen on: every address of the pod by default; 127.0.0.1 for "
        "a runtime run on a machine rather than in a pod.",
    )
    http_port: int = Field(default=8080, ge=1, le=65535)
    max_new_tokens: int = Field(default=32, ge=1, le=512)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Injected 500s.")
    extra_latency_seconds: float = Field(default=0.0, ge=0.0, le=60.0)
    token_latency_seconds: float = Field(default=0.0, ge=0.0, le=10.0)
    fault_control: bool = Field(
        default=False, description="Allow PUT /kubeforge/faults to change faults while serving."
    )
    seed: int = 0


class InferenceMetrics:
    """The runtime's ASGI app, in front of kserve's (uvicorn serves it: ``serve_on``): counts and
    times inference requests (by the adapter that answered, which the OpenAI-compatible API's
    handler names), injects faults into v1 and v2 requests (the OpenAI-compatible API's handler
    injects its own once it has read the request's model), and writes each request's access
    line once its response has ended. Requests under ``/openai/v1/`` go to ``openai``
    (``openai_asgi.OpenAIApp``), when the model has that API, without passing through kserve's
    app and its middlewares (its timing middleware's two trace lines a request among them)."""

    def __init__(
        self, app: Any, settings: RuntimeSettings, injector: FaultInjector, openai: Any = None
    ) -> None:
        self.app, self.openai = app, openai
        self.labels = (settings.namespace, settings.model_name, settings.revision)
        self.revision = settings.revision.encode()
        self.injector = injector
        # series from the start, so that a rate over them counts a canary's first requests
        for adapter in ("", *settings.adapters):
            for protocol in PROTOCOLS if not adapter else ("openai",):
                LATENCY.labels(*self.labels, adapter, protocol)
                for code in ("200", "500"):
                    REQUESTS.labels(*self.labels, adapter, protocol, code)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # the lifespan (kserve's startup and shutdown), websockets
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        app = self.openai if self.openai and path.startswith(OPENAI_PREFIX) else self.app
        match = INFERENCE_PATH.match(path)
        started = time.perf_counter()
        # 500 until answered: what the app raised; "left": the app was told the client went away
        status = {"code": 500, "started": 0, "left": 0}

        async def send_counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = int(message["status"]), 1
                if match is not None:  # which version answered: a client (or a test of a
                    # traffic split) can tell
                    headers = [*message.get("headers", []), (REVISION_HEADER, self.revision)]
                    message = {**message, "headers": headers}
            await send(message)

        async def receive_watched() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "http.disconnect":
                status["left"] = 1
            return message

        state = scope.setdefault("state", {})
        protocol = next(p for p in PROTOCOLS if match.group(p)) if match else None
        try:
            # the OpenAI-compatible API's handler injects once it has read the request's model
            model = match.group(f"{protocol}_model") if match and protocol != "openai" else None
            if model is not None and await self.injector.delay_then_fail(model):
                await send_json(send_counted, 500, b'{"error":"injected fault (fault injection)"}')
            else:
                await app(scope, receive_watched, send_counted)
                if not status["started"] and status["left"]:  # the client left before its answer
                    status["code"] = CLIENT_LEFT
                # not started, the client still there: uvicorn answers 500 itself (counted so)
        finally:
            if protocol is not None:
                labels = (*self.labels, state.get(ADAPTER_STATE, ""), protocol)
                REQUESTS.labels(*labels, str(status["code"])).inc()
                LATENCY.labels(*labels).observe(time.perf_counter() - started)
            access_line(scope, status["code"])


def access_line(scope: Any, code: int) -> None:
    """uvicorn's access line (the same arguments, so its formatter writes it the same way)."""
    if ACCESS_LOG.isEnabledFor(logging.INFO):
        ACCESS_LOG.info(
            '%s - "%s %s HTTP/%s" %d',
            get_client_addr(scope),
            scope["method"],
            get_path_with_query_string(scope),
            scope["http_version"],
            code,
        )


def add_routes(app: Any, model: Any, settings: RuntimeSettings, injector: FaultInjector) -> None:
    """The generate extension for causal LMs and, when enabled, fault control."""
    from fastapi import Body, HTTPException

    name = settings.model_name

    if hasattr(model, "generate"):

        @app.post(f"/v2/models/{name}/generate")
        async def generate(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
            text = body.get("text_input")
            if not isinstance(text, str):
                raise HTTPException(422, "text_input: a string is required")
            params = body.get("parameters") or {}
            out = await asyncio.to_thread(model.generate, [text], params.get("max_tokens"))
            return {"model_name": name, "text_output": out[0]}

    if settings.fault_control:

        @app.get("/kubeforge/faults")
        async def get_faults() -> dict[str, Any]:
            return injector.faults.model_dump(by_alias=True)

        @app.put("/kubeforge/faults")
        async def put_faults(faults: Faults) -> dict[str, Any]:
            injector.set(faults)
            return faults.model_dump(by_alias=True)


def fetch_adapters(uris: dict[str, str], model_name: str) -> dict[str, Path]:
    """Each adapter's directory, fetched or found by its URI; a name that is the model's own,
    or a URI that holds no adapter, is refused naming it. Fetched copies live in one temporary
    directory that is removed when the process exits (a runtime started outside a container,
    as the tests and the benchmarks do, left one directory per adapter behind)."""
    from kubeforge_pipelines import storage
    from kubeforge_runtimes.models import ModelDirError, find_model

    found: dict[str, Path] = {}
    for name, uri in sorted(uris.items()):
        if name == model_name:
            raise ModelDirError(f"adapter {name!r} has the model's own name")
        try:
            root = storage.fetch_dir(uri, _adapters_dir() / name)
        except storage.StorageError as err:
            raise ModelDirError(f"adapter {name!r}: {err}") from err
        # its base is the model it is loaded on, whatever its lineage says
        adapter = find_model(root, base_uri=f"(the served model, {model_name})")
        if adapter.format != "peft":
            raise ModelDirError(f"adapter {name!r}: {uri} holds a {adapter.format} model")
        found[name] = adapter.path
    return found


_ADAPTERS: list[tempfile.TemporaryDirectory[str]] = []


def _adapters_dir() -> Path:
    """The process's directory for fetched adapters: made on first use, and removed at exit by
    its finalizer (kserve's server returns from SIGTERM, so the interpreter exits normally)."""
    if not _ADAPTERS:
        _ADAPTERS.append(tempfile.TemporaryDirectory(prefix="kubeforge-adapters-"))
    return Path(_ADAPTERS[0].name)


def serve(settings: RuntimeSettings) -> None:
    """Load the model and serve it until SIGTERM (kserve's ModelServer handles signals)."""
    from kserve.model_server import app

    from kserve import ModelServer
    from kubeforge_runtimes.models import build_model, find_model

    log_as_kserve()
    found = find_model(settings.model_dir, settings.model_format, settings.base_model_uri)
    adapters = fetch_adapters(settings.adapters, settings.model_name)
    model = build_model(settings.model_name, found, settings.max_new_tokens, adapters)
    model.load()
    injector = FaultInjector(
        Faults(
            error_rate=settings.error_rate,
            extra_latency_seconds=settings.extra_latency_seconds,
            token_latency_seconds=settings.token_latency_seconds,
        ),
        seed=settings.seed,
    )
    add_routes(app, model, settings, injector)
    openai = None
    if hasattr(model, "generate"):  # a causal LM: the OpenAI-compatible API too
        from kubeforge_runtimes.generation import TokenMetrics
        from kubeforge_runtimes.openai_api import OpenAIServer
        from kubeforge_runtimes.openai_asgi import OpenAIApp

        metrics = TokenMetrics(settings.namespace, settings.model_name, settings.revision)
        openai = OpenAIApp(OpenAIServer(model, metrics, injector))
    use_uvloop()
    serve_on(settings.http_host, InferenceMetrics(app, settings, injector, openai))
    ModelServer(http_port=settings.http_port, enable_grpc=False, workers=1).start([model])


def log_as_kserve() -> None:
    """The runtime's own log lines (``kubeforge_runtimes.*``: the threads it took, a model it
    cannot batch) at INFO through kserve's handler and format. kserve configures its loggers
    when its server is built, after the model's load, and the root logger not at all: without
    this only warnings got out, bare."""
    from kserve.logging import configure_logging

    configure_logging()  # kserve's server, built later, leaves a configured logging alone
    own = logging.getLogger("kubeforge_runtimes")
    own.handlers = list(logging.getLogger("kserve").handlers)
    own.setLevel(logging.INFO)
    own.propagate = False


def serve_on(host: str, front: Any = None) -> None:
    """Make kserve's REST server listen on ``host`` and, when given, serve ``front`` (an ASGI
    app in front of kserve's, such as ``InferenceMetrics``) instead of kserve's app itself
    (KServe's own servers use it for the host alone: ``kubeforge_labs.kserve_hf``).

    kserve (0.20, 0.21) hard-codes 0.0.0.0 and has no option for it; that is right in a pod and
    wrong on a machine (the tests' and benchmarks' runtimes would listen on every interface).
    Nor can a Starlette middleware sit outside the ones kserve adds as its server starts. Its
    server reads both from its uvicorn config when it starts serving, so setting them after
    construction is enough; kserve still adds its routes and middlewares to its own app, which
    ``front`` hands every request it does not answer itself."""
    from kserve.protocol.rest.server import RESTServer

    from kserve import model_server

    class RuntimeRESTServer(RESTServer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if host != "0.0.0.0":  # noqa: S104 - kserve's own choice, nothing to change
                self.config.host = host
            if front is not None:
                self.config.app = front
                self.config.http = without_access_log()

    model_server.RESTServer = RuntimeRESTServer


def without_access_log() -> type:
    """uvicorn's HTTP protocol (httptools', else h11's: its ``auto``) without its access line,
    which it writes as a response starts, before the first byte leaves: a streamed answer's
    first token waited for it. ``InferenceMetrics`` writes the same line to the same logger
    (``uvicorn.access``: its handlers, filters and format) once the response has ended."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class Protocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.access_log = False  # read by each request's cycle, made after this

    return Protocol


def use_uvloop() -> None:
    """uvloop for the event loop, when installed (uvicorn's standard extra brings it).
    kserve's ``--event_loop auto`` promises it but starts its servers with ``asyncio.run``,
    which takes the policy's loop, the stdlib's; uvloop hands a streamed token from the
    decoding thread to the socket in a fraction of the stdlib loop's time."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # kserve sets its executor on the current loop before asyncio.run makes the one it runs
    asyncio.set_event_loop(asyncio.new_event_loop())

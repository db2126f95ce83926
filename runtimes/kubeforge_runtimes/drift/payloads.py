"""Inference payloads as KServe's logger sends them: one CloudEvent per request and one per
response (binary content mode, ``ce-type`` ``org.kubeflow.serving.inference.request`` /
``.response``, the same ``ce-id`` on both), with the v1 or v2 protocol body.

Parsing is pure and strict: anything it cannot read raises :class:`PayloadError` with a short
``reason`` (the metric label) and a message that names what was wrong, so the service counts and
reports it instead of failing."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloudevents.exceptions import GenericException as CloudEventError
from cloudevents.http import from_http

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


class PayloadError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Event:
    id: str
    kind: str  # request | response
    body: Any
    inference_service: str | None
    namespace: str | None


def parse_event(headers: Mapping[str, str], body: bytes) -> Event:
    """A CloudEvent (binary or structured mode) with a JSON body."""
    try:
        event = from_http(dict(headers), body)
    except CloudEventError as err:
        raise PayloadError("not_cloudevent", f"not a CloudEvent: {err}") from err
    except ValueError as err:  # structured mode with a body that is not JSON
        raise PayloadError("not_json", f"body is not JSON: {err}") from err
    ce_type = event["type"]
    if ce_type == REQUEST_TYPE:
        kind = "request"
    elif ce_type == RESPONSE_TYPE:
        kind = "response"
    else:
        raise PayloadError(
            "unknown_type", f"ce-type {ce_type!r} is neither {REQUEST_TYPE} nor {RESPONSE_TYPE}"
        )
    data = event.get_data()
    if isinstance(data, bytes | bytearray | str):
        try:
            data = json.loads(data)
        except ValueError as err:
            raise PayloadError("not_json", f"body is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise PayloadError("not_json", "body is not a JSON object")
    attrs = event.get_attributes()
    return Event(
        id=str(event["id"]),
        kind=kind,
        body=data,
        inference_service=attrs.get("inferenceservicename"),
        namespace=attrs.get("namespace"),
    )


def request_rows(body: Mapping[str, Any], features: Sequence[str]) -> list[dict[str, Any]]:
    """The feature rows of a v1 (``instances``) or v2 (``inputs``) request body.

    v1: each instance is an object keyed by feature name, or a list of values in the order of
    ``features``. v2: one input of shape [n, len(features)] in that order, or one input per
    feature (named after it) of shape [n]."""
    if "instances" in body:
        return _v1_rows(body["instances"], features)
    if "inputs" in body:
        return _v2_rows(body["inputs"], features)
    raise PayloadError(
        "unknown_protocol", "request body has neither 'instances' (v1) nor 'inputs' (v2)"
    )


def _v1_rows(instances: Any, features: Sequence[str]) -> list[dict[str, Any]]:
    if not isinstance(instances, list):
        raise PayloadError("unknown_protocol", "'instances' is not a list")
    rows = []
    for i, inst in enumerate(instances):
        if isinstance(inst, dict):
            rows.append(inst)
        elif isinstance(inst, list):
            if len(inst) != len(features):
                raise PayloadError(
                    "shape_mismatch",
                    f"instances[{i}] has {len(inst)} values; the monitor has {len(features)} "
                    f"features ({', '.join(features)})",
                )
            rows.append(dict(zip(features, inst, strict=True)))
        else:
            raise PayloadError(
                "unknown_protocol", f"instances[{i}] is neither an object nor a list"
            )
    return rows


def _v2_rows(inputs: Any, features: Sequence[str]) -> list[dict[str, Any]]:
    if not isinstance(inputs, list) or not inputs:
        raise PayloadError("unknown_protocol", "'inputs' is not a non-empty list")
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("data"), list):
            raise PayloadError("unknown_protocol", f"inputs[{i}] has no 'data' list")
    if len(inputs) == 1 and inputs[0].get("name") not in features:
        return _v2_matrix(inputs[0], features)
    columns: dict[str, list[Any]] = {}
    for tensor in inputs:
        columns[str(tensor.get("name"))] = _flat(tensor["data"])
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise PayloadError("shape_mismatch", "inputs have different lengths")
    (n,) = lengths
    return [{name: values[r] for name, values in columns.items()} for r in range(n)]


def _v2_matrix(tensor: dict[str, Any], features: Sequence[str]) -> list[dict[str, Any]]:
    data = _flat(tensor["data"])
    width = len(features)
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or shape[1] != width
        or len(data) != shape[0] * width
    ):
        raise PayloadError(
            "shape_mismatch",
            f"input {tensor.get('name')!r} has shape {shape} and {len(data)} values; the monitor "
            f"expects [n, {width}] for its features ({', '.join(features)})",
        )
    return [
        dict(zip(features, data[r * width : (r + 1) * width], strict=True)) for r in range(shape[0])
    ]


def _flat(data: list[Any]) -> list[Any]:
    if data and isinstance(data[0], list):
        return [v for row in data for v in (row if isinstance(row, list) else [row])]
    return data


def response_outputs(body: Mapping[str, Any]) -> list[Any]:
    """The predictions of a v1 (``predictions``) or v2 (first of ``outputs``) response."""
    if "predictions" in body:
        preds = body["predictions"]
        if not isinstance(preds, list):
            raise PayloadError("unknown_protocol", "'predictions' is not a list")
        return preds
    outputs = body.get("outputs")
    if isinstance(outputs, list) and outputs and isinstance(outputs[0], dict):
        data = outputs[0].get("data")
        if isinstance(data, list):
            return _flat(data)
    raise PayloadError(
        "unknown_protocol", "response body has neither 'predictions' (v1) nor 'outputs' (v2)"
    )

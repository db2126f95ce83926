"""What a request's handler tells the metrics middleware (``server.InferenceMetrics``) that only
the handler knows: the ASGI scope's state, shared by every layer between the two, carries it."""

from __future__ import annotations

# the adapter a request was answered with (the OpenAI-compatible API's ``model``, when it names
# a loaded adapter): the ``adapter`` label of its request metrics
ADAPTER_STATE = "kubeforge.adapter"

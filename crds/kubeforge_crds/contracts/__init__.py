"""Contracts: what several parts of kubeforge agree on, on the ground floor beside the API types.

Two kinds, the operator and the data plane, or the operator and the REST API meet here rather
than import each other:

- ``labels``: label and annotation keys (the rollback request, the retraining trigger, the live
  data a run trained on, the children's selector labels);
- ``serving``: the InferenceService API, the built-in runtime's name and the environment it reads;
- ``drift``: the drift service's configuration model and where the service is reached;
- ``pipeline``: the fine-tuning pipeline's parameters, derived from a FineTuneJob spec.

Only the standard library and pydantic are imported here, so every part may depend on this
package (``make lint`` checks the layers with import-linter).
"""

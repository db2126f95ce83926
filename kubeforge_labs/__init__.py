"""Labs: the project's programs run as real local processes (Prometheus, model runtimes, the
drift service, the REST API) and driven by the operator's own code, shared by the integration
tests and the benchmarks in bench/, and the demo's helpers (helm.py, kit.py). Not shipped:
nothing in the five kubeforge packages imports it."""

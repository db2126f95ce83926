"""The controller machinery every kind shares, and nothing kind-specific: the Kubernetes calls
(``kube``), the reconcile shape and its context (``reconcile``), conditions (``conditions``),
the readiness preconditions shared by kinds (``policies``), child metadata (``children``),
placement on GPU nodes (``placement``), the platform config (``platform``), leader election
(``leader``), metrics (``metrics``) and settings (``settings``). Kinds import from here; nothing
here imports a kind."""

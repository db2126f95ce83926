"""kubeforge's data-plane programs: the built-in model runtime (``server``) that ModelServers
serve through KServe."""

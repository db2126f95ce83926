"""The kubeforge REST API and web portal (FastAPI), acting as the caller through Kubernetes
impersonation. Not built yet: see issue #7."""

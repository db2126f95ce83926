"""The kubeforge REST API (and, later, the web portal), acting as the caller through Kubernetes
impersonation so that RBAC decides (issue #7)."""

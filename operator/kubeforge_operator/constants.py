"""Names the operator owns: finalizer, annotation prefixes, labels, field manager."""

from kubeforge_crds import GROUP

FIELD_MANAGER = "kubeforge-operator"
FINALIZER = f"{GROUP}/finalizer"
ANNOTATION_PREFIX = GROUP  # kopf's progress and diff-base annotations live under kubeforge.io/
DIFFBASE_ANNOTATION = "last-handled-configuration"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubeforge-operator"
PART_OF = "kubeforge"

# Condition types and reasons (CamelCase constants, as in cert-manager and cluster-api).
READY = "Ready"
SCHEDULED = "Scheduled"

REASON_INVALID_SPEC = "InvalidSpec"
REASON_RECONCILING = "Reconciling"

"""Names the operator's machinery owns: field manager, finalizer, kopf's annotation prefix."""

from kubeforge_crds import GROUP

FIELD_MANAGER = "kubeforge-operator"
FINALIZER = f"{GROUP}/finalizer"
ANNOTATION_PREFIX = GROUP  # kopf's progress and diff-base annotations live under kubeforge.io/
DIFFBASE_ANNOTATION = "last-handled-configuration"

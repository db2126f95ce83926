"""The platform config (notebook images, hardware profiles), read from the YAML file named by
``KUBEFORGE_OPERATOR_PLATFORM_CONFIG`` and re-read when the file changes (a mounted ConfigMap is
updated in place), so the platform team's edits apply without restarting the operator."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import yaml
from pydantic import ValidationError

from kubeforge_crds.platform import PlatformConfig

log = logging.getLogger(__name__)

_lock = threading.Lock()
_cache: dict[Path, tuple[float, PlatformConfig]] = {}


class PlatformConfigError(RuntimeError):
    pass


def load_platform_config(path: Path | None) -> PlatformConfig:
    """The config in ``path`` (an empty one when no file is configured)."""
    if path is None:
        return PlatformConfig()
    try:
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise PlatformConfigError(f"platform config {path}: {exc.strerror}") from exc
    with _lock:
        cached = _cache.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
    try:
        config = PlatformConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise PlatformConfigError(f"platform config {path} is invalid: {exc}") from exc
    with _lock:
        _cache[path] = (mtime, config)
    log.info("Loaded platform config", extra={"path": str(path)})
    return config

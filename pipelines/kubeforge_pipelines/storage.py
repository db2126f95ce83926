"""Where the pipeline reads and writes: URIs to local paths or S3 objects.

- ``file:///abs/path`` and plain paths: the local file system;
- ``pvc://claim/path``: a PersistentVolumeClaim mounted under ``$KUBEFORGE_PVC_ROOT/claim``
  (the Job backend mounts each claim there; default ``/mnt/pvc``);
- ``s3://bucket/key``: S3 or an S3-compatible store, with the credentials of a data connection
  (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_S3_ENDPOINT``, ``AWS_DEFAULT_REGION``
  in the environment, as Open Data Hub's data connections expose them), through boto3;
- ``hf://org/name``: a model already in the local Hugging Face cache (nothing is downloaded).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class StorageError(ValueError):
    """A URI that cannot be read or written, with the reason."""


@dataclass(frozen=True)
class Location:
    scheme: str  # file | s3 | hf
    path: str  # local path, S3 key or HF repo id
    bucket: str = ""

    @property
    def local(self) -> Path:
        if self.scheme != "file":
            raise StorageError(f"{self.scheme}:// is not a local path")
        return Path(self.path)


def pvc_root() -> Path:
    return Path(os.environ.get("KUBEFORGE_PVC_ROOT", "/mnt/pvc"))


def parse_uri(uri: str) -> Location:
    """Resolve a URI to a location; raises StorageError naming what is wrong."""
    if "://" not in uri:
        return Location("file", str(Path(uri).resolve()))
    parsed = urlparse(uri)
    scheme = parsed.scheme
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StorageError(f"{uri!r}: file:// URIs take an absolute path (file:///data/x)")
        return Location("file", parsed.path)
    if scheme == "pvc":
        if not parsed.netloc:
            raise StorageError(f"{uri!r}: a pvc:// URI names the claim: pvc://CLAIM/path")
        return Location("file", str(pvc_root() / parsed.netloc / parsed.path.lstrip("/")))
    if scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"{uri!r}: an s3:// URI names the bucket: s3://BUCKET/key")
        return Location("s3", parsed.path.lstrip("/"), bucket=parsed.netloc)
    if scheme == "hf":
        repo = (parsed.netloc + parsed.path).strip("/")
        if not repo:
            raise StorageError(f"{uri!r}: an hf:// URI names the repository: hf://ORG/NAME")
        return Location("hf", repo)
    raise StorageError(f"{uri!r}: unsupported scheme {scheme!r} (use file, pvc, s3 or hf)")


def _s3_client() -> Any:
    try:
        import boto3
    except ImportError as err:  # pragma: no cover - depends on the image
        raise StorageError("s3:// needs boto3, which is not installed in this image") from err
    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("AWS_S3_ENDPOINT") or None,
        region_name=os.environ.get("AWS_DEFAULT_REGION") or None,
    )


def fetch_file(uri: str, workdir: Path) -> Path:
    """A local path holding the file at ``uri`` (downloaded into ``workdir`` for s3://)."""
    loc = parse_uri(uri)
    if loc.scheme == "file":
        path = loc.local
        if not path.is_file():
            raise StorageError(f"{uri!r}: no such file ({path})")
        return path
    if loc.scheme == "s3":
        target = workdir / Path(loc.path).name
        try:
            _s3_client().download_file(loc.bucket, loc.path, str(target))
        except Exception as err:
            raise StorageError(f"{uri!r}: cannot download from S3: {err}") from err
        return target
    raise StorageError(f"{uri!r}: a dataset must be a file (file://, pvc:// or s3://)")


def fetch_dir(uri: str, workdir: Path) -> Path:
    """A local directory holding the model at ``uri``."""
    loc = parse_uri(uri)
    if loc.scheme == "file":
        path = loc.local
        if not path.is_dir():
            raise StorageError(f"{uri!r}: no such directory ({path})")
        return path
    if loc.scheme == "hf":
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(loc.path, local_files_only=True))
        except Exception as err:
            raise StorageError(
                f"{uri!r}: not in the local Hugging Face cache (nothing is downloaded at run "
                f"time; mirror the model to a PVC or S3 and use that URI): {err}"
            ) from err
    s3 = _s3_client()
    target = workdir / "model"
    prefix = loc.path.rstrip("/") + "/"
    found = False
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found = True
            dest = target / item["Key"][len(prefix) :]
            dest.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(loc.bucket, item["Key"], str(dest))
    if not found:
        raise StorageError(f"{uri!r}: no objects under that prefix")
    return target


def publish_dir(source: Path, uri: str) -> str:
    """Copy the directory ``source`` to ``uri``; returns the URI written."""
    loc = parse_uri(uri)
    if loc.scheme == "file":
        target = loc.local
        if target.exists():
            raise StorageError(f"{uri!r} already exists; model versions are never overwritten")
        target.parent.mkdir(parents=True, exist_ok=True)
        # copy next to the target, then rename: readers never see a half-written version
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
        shutil.copytree(source, staging, dirs_exist_ok=True)
        staging.rename(target)
        return uri
    if loc.scheme == "s3":
        s3 = _s3_client()
        for path in sorted(source.rglob("*")):
            if path.is_file():
                key = f"{loc.path.rstrip('/')}/{path.relative_to(source)}"
                s3.upload_file(str(path), loc.bucket, key)
        return uri
    raise StorageError(f"{uri!r}: models can be written to file://, pvc:// or s3://")


def list_versions(uri: str) -> list[str]:
    """Names of the version directories already under ``uri`` (local stores only; S3 lists
    the common prefixes)."""
    loc = parse_uri(uri)
    if loc.scheme == "file":
        root = loc.local
        return (
            sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            if root.is_dir()
            else []
        )
    if loc.scheme == "s3":
        prefix = loc.path.rstrip("/") + "/"
        pages = (
            _s3_client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=loc.bucket, Prefix=prefix, Delimiter="/")
        )
        return sorted(
            p["Prefix"][len(prefix) :].rstrip("/")
            for page in pages
            for p in page.get("CommonPrefixes", [])
        )
    return []

"""Importing an image into the node's containerd without sending it the layers it already holds.

``ctr images import`` reads and hashes every layer of an archive, even those whose blobs
containerd's content store already has: every change to kubeforge's code makes a new trainer
image (4 GB of dependencies under a 1 MB layer of kubeforge's packages), and re-importing it
took 65 s of every slow-tier run. containerd's importer also reads an OCI image layout, whose
manifest may name blobs the layout leaves out: the content store resolves them, and unpacking
skips the layers whose snapshots already exist. So an image built here (``images.write_image``:
its tag, config and layer files) is streamed into ``ctr`` as an OCI layout of its config, its
manifest and only the layers containerd lacks, each read from its file in the cache.

Written by hand because no tool here does it: skopeo and crane are not installed (no registry),
and ``ctr`` itself has no option to skip blobs the store holds (containerd 1.6, Debian's).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import IO

from kfcluster.settings import ClusterError

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"  # uncompressed, as the layers are cached


Member = tuple[str, Callable[[], IO[bytes]], int]  # a layout's file: name, opener, size


def _in_memory(name: str, data: bytes) -> Member:
    return (name, lambda: io.BytesIO(data), len(data))


def oci_layout(image: Path, present: Iterable[str]) -> tuple[str, list[Member]]:
    """The tag of ``image`` (an ``images.write_image`` file) and the members of an OCI layout
    of it (name, opener, size), without the layers whose digests (``sha256:...``) are in
    ``present``."""
    have = set(present)
    entry = json.loads(image.read_text())
    members: list[Member] = []

    def blob(media_type: str, data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        members.append(_in_memory(f"blobs/sha256/{digest}", data))
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    descs = []
    for layer in entry["layers"]:
        path, digest, size = Path(layer["path"]), layer["digest"], int(layer["size"])
        if not path.is_file() or path.stat().st_size != size:
            raise ClusterError(
                f"{image.name}: its layer {path} is gone or changed (make images builds it again)"
            )
        descs.append({"mediaType": LAYER, "digest": digest, "size": size})
        if digest not in have:
            members.append((f"blobs/sha256/{digest[7:]}", partial(path.open, "rb"), size))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": blob(CONFIG, entry["config"].encode()),
        "layers": descs,
    }
    target = blob(MANIFEST, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [{**target, "annotations": {"io.containerd.image.name": entry["tag"]}}],
    }
    members.append(_in_memory("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'))
    members.append(_in_memory("index.json", json.dumps(index).encode()))
    return entry["tag"], members


def write_layout(out: IO[bytes], members: list[Member]) -> None:
    """Stream the layout's members as a tar into ``out`` (ctr's stdin)."""
    with tarfile.open(fileobj=out, mode="w|") as tar:
        for name, opener, size in members:
            info = tarfile.TarInfo(name)
            info.size = size
            with opener() as f:
                tar.addfile(info, f)

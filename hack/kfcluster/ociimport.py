"""Importing an image into the node's containerd without sending it the layers it already holds.

``ctr images import`` of a docker-archive reads and hashes every layer in it, even those whose
blobs containerd's content store already has: every change to kubeforge's code makes a new
trainer archive (4 GB of dependencies under a 1 MB layer of kubeforge's packages), and
re-importing it took 65 s of every slow-tier run. containerd's importer also reads an OCI image
layout, whose manifest may name blobs the archive leaves out: the content store resolves them,
and unpacking skips the layers whose snapshots already exist. So the archive built here
(``images.write_archive``, a docker-archive, which any tool loads) is turned, as it streams into
``ctr``, into an OCI layout of its config, its manifest and only the layers containerd lacks.

Written by hand because no tool here does it: skopeo and crane are not installed (no registry),
and ``ctr`` itself has no option to skip blobs the store holds (containerd 1.6, Debian's).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"  # uncompressed, as the docker-archive holds it


Member = tuple[str, Callable[[], IO[bytes]], int]  # a layout's file: name, opener, size


def _in_memory(name: str, data: bytes) -> Member:
    return (name, lambda: io.BytesIO(data), len(data))


def oci_layout(archive: Path, present: Iterable[str]) -> tuple[str, list[Member]]:
    """The image's tag and the members of an OCI layout of ``archive`` (name, opener, size),
    without the layers whose digests (``sha256:...``) are in ``present``."""
    have = set(present)
    with tarfile.open(archive) as tar:
        (entry,) = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = tar.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
        layers = [tar.getmember(name) for name in entry["Layers"]]
    members: list[Member] = []

    def blob(media_type: str, data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        members.append(_in_memory(f"blobs/sha256/{digest}", data))
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    descs = []
    for member in layers:
        # the docker-archive names each layer "<sha256 of layer.tar>/layer.tar"
        digest = member.name.split("/", 1)[0]
        descs.append({"mediaType": LAYER, "digest": f"sha256:{digest}", "size": member.size})
        if f"sha256:{digest}" not in have:
            members.append((f"blobs/sha256/{digest}", _opener(archive, member), member.size))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": blob(CONFIG, config),
        "layers": descs,
    }
    tag = entry["RepoTags"][0]
    target = blob(MANIFEST, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [{**target, "annotations": {"io.containerd.image.name": tag}}],
    }
    members.append(_in_memory("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'))
    members.append(_in_memory("index.json", json.dumps(index).encode()))
    return tag, members


def _opener(archive: Path, member: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    """The archive opened at ``member``'s data (``tarfile.addfile`` reads ``member.size`` bytes
    of it, no more)."""

    def open_() -> IO[bytes]:
        f = archive.open("rb")
        f.seek(member.offset_data)
        return f

    return open_


def write_layout(out: IO[bytes], members: list[Member]) -> None:
    """Stream the layout's members as a tar into ``out`` (ctr's stdin)."""
    with tarfile.open(fileobj=out, mode="w|") as tar:
        for name, opener, size in members:
            info = tarfile.TarInfo(name)
            info.size = size
            with opener() as f:
                tar.addfile(info, f)

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


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {
        "mediaType": media_type,
        "digest": f"sha256:{hashlib.sha256(data).hexdigest()}",
        "size": len(data),
    }


def oci_layout(
    archive: Path, present: Iterable[str]
) -> tuple[str, list[tuple[str, Callable[[], IO[bytes]], int]]]:
    """The image's tag and the members of an OCI layout of ``archive`` (name, opener, size),
    without the layers whose digests (``sha256:...``) are in ``present``."""
    have = set(present)
    with tarfile.open(archive) as tar:
        (entry,) = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = tar.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
        layers = [(name, tar.getmember(name)) for name in entry["Layers"]]
    members: list[tuple[str, Callable[[], IO[bytes]], int]] = []

    def blob(data: bytes) -> None:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        members.append((f"blobs/sha256/{digest[7:]}", lambda: io.BytesIO(data), len(data)))

    descs = []
    for name, member in layers:
        # the docker-archive names each layer "<sha256 of layer.tar>/layer.tar"
        digest = f"sha256:{name.split('/', 1)[0]}"
        descs.append({"mediaType": LAYER, "digest": digest, "size": member.size})
        if digest not in have:
            members.append(
                (f"blobs/sha256/{digest[7:]}", _member_opener(archive, member), member.size)
            )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": _descriptor(CONFIG, config),
            "layers": descs,
        }
    ).encode()
    tag = entry["RepoTags"][0]
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    **_descriptor(MANIFEST, manifest),
                    "annotations": {"io.containerd.image.name": tag},
                }
            ],
        }
    ).encode()
    blob(config)
    blob(manifest)
    for name, data in (("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'), ("index.json", index)):
        members.append((name, lambda data=data: io.BytesIO(data), len(data)))  # type: ignore[misc]
    return tag, members


def _member_opener(archive: Path, member: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    def open_() -> IO[bytes]:
        f = archive.open("rb")
        f.seek(member.offset_data)
        return _Bounded(f, member.size)

    return open_


class _Bounded(io.RawIOBase):
    """``size`` bytes of ``f`` from where it stands (one member of the archive), closing it."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self._f, self._left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._f.read(min(len(buffer), self._left))
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


def write_layout(out: IO[bytes], members: list[tuple[str, Callable[[], IO[bytes]], int]]) -> None:
    """Stream the layout's members as a tar into ``out`` (ctr's stdin)."""
    with tarfile.open(fileobj=out, mode="w|") as tar:
        for name, opener, size in members:
            info = tarfile.TarInfo(name)
            info.size = size
            with opener() as f:
                tar.addfile(info, f)

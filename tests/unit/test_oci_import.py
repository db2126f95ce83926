"""The OCI layout the real node's image import streams into containerd (hack/kfcluster/ociimport):
an image written by the image builder (its config and layer files), turned into a layout without
the layers containerd holds, read back as a tar and checked as an OCI image layout; the image
cache keeps one copy of each layer and drops what earlier builds left."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

from tests.cases import REPO

sys.path.insert(0, str(REPO / "hack"))
from kfcluster import images
from kfcluster.images import ImageConfig, Layer, write_image
from kfcluster.ociimport import LAYER, MANIFEST, oci_layout, write_layout
from kfcluster.settings import ClusterError


def layer(path: Path, name: str, text: str) -> Layer:
    data = text.encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return Layer(path)


def read_layout(members: list) -> dict[str, bytes]:  # type: ignore[type-arg]
    out = io.BytesIO()
    write_layout(out, members)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_the_layout_leaves_out_the_layers_containerd_holds_and_names_them(
    tmp_path: Path,
) -> None:
    base = layer(tmp_path / "base.tar", "etc/os-release", "ID=debian\n" * 1000)
    app = layer(tmp_path / "app.tar", "opt/app/main.py", "print('v2')\n")
    image = write_image(
        tmp_path / "image.json", "localhost/probe:dev", [base, app], ImageConfig(cmd=["sh"])
    )
    assert image.stat().st_size < 2048  # names its layers, holds no copy of them
    tag, members = oci_layout(image, [f"sha256:{base.digest()}", "sha256:" + "0" * 64])
    files = read_layout(members)
    assert tag == "localhost/probe:dev"
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    # every blob is named by the sha256 of what it holds
    blobs = {n: d for n, d in files.items() if n.startswith("blobs/")}
    for name, data in blobs.items():
        assert name == f"blobs/sha256/{hashlib.sha256(data).hexdigest()}"
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"] == {"io.containerd.image.name": "localhost/probe:dev"}
    assert entry["mediaType"] == MANIFEST
    manifest = json.loads(blobs[f"blobs/sha256/{entry['digest'][7:]}"])
    assert entry["size"] == len(blobs[f"blobs/sha256/{entry['digest'][7:]}"])
    # the manifest names both layers, bottom first, as the image's config lists their diff ids
    layers = manifest["layers"]
    assert [d["digest"] for d in layers] == [f"sha256:{base.digest()}", f"sha256:{app.digest()}"]
    assert {d["mediaType"] for d in layers} == {LAYER}
    assert [d["size"] for d in layers] == [base.path.stat().st_size, app.path.stat().st_size]
    config = json.loads(blobs[f"blobs/sha256/{manifest['config']['digest'][7:]}"])
    assert config["rootfs"]["diff_ids"] == [d["digest"] for d in layers]
    # only the layer containerd lacks travels, whole
    assert f"blobs/sha256/{base.digest()}" not in blobs
    assert blobs[f"blobs/sha256/{app.digest()}"] == app.path.read_bytes()
    assert len(blobs) == 3  # the config, the manifest, the new layer


def test_with_nothing_held_every_layer_travels(tmp_path: Path) -> None:
    base = layer(tmp_path / "base.tar", "etc/os-release", "ID=debian\n")
    app = layer(tmp_path / "app.tar", "opt/app/main.py", "print('v1')\n")
    image = write_image(tmp_path / "i.json", "localhost/p:dev", [base, app], ImageConfig())
    files = read_layout(oci_layout(image, [])[1])
    assert files[f"blobs/sha256/{base.digest()}"] == base.path.read_bytes()
    assert files[f"blobs/sha256/{app.digest()}"] == app.path.read_bytes()


def test_a_layer_gone_since_the_image_was_written_is_said(tmp_path: Path) -> None:
    app = layer(tmp_path / "app.tar", "opt/app/main.py", "print('v1')\n")
    image = write_image(tmp_path / "i.json", "localhost/p:dev", [app], ImageConfig())
    app.path.unlink()  # a newer build of its sources replaced it
    with pytest.raises(ClusterError, match=r"app\.tar is gone or changed \(make images"):
        oci_layout(image, [])


def test_the_cache_drops_older_builds_and_the_archives_of_earlier_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "IMAGES", tmp_path)
    archive = tmp_path / "trainer-0123456789abcdef.tar"  # a docker-archive of earlier code
    older = tmp_path / "trainer-fedcba9876543210.image.json"
    deps = tmp_path / "layer-deps-trainer-0123456789abcdef.tar"  # a layer: kept
    for path in (archive, older, deps):
        path.write_text("x")
    out = images._cached("trainer", "new inputs", images.IMAGE)
    assert out.name.startswith("trainer-")
    assert out.name.endswith(".image.json")
    assert not archive.exists()
    assert not older.exists()
    assert deps.exists()
    # an image whose layer a newer build replaced is not offered to the node
    app = layer(tmp_path / "layer-app-0123456789abcdef.tar", "opt/app/x.py", "x = 1\n")
    write_image(out, "localhost/kubeforge/kubeforge-trainer:dev", [app], ImageConfig())
    (tmp_path / "trainer.current").write_text(str(out))
    assert images.current_images() == [out]
    app.path.unlink()
    assert images.current_images() == []


def test_an_image_is_written_again_when_a_layer_it_names_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "IMAGES", tmp_path)
    base = layer(tmp_path / "base-0123456789abcdef.layer.tar", "etc/os-release", "ID=debian\n")
    out = images._cached("base", "inputs", images.IMAGE)
    assert base.path.exists()  # a layer of the same name is not an older build of the image
    write_image(out, "localhost/kubeforge/base:bookworm", [base], ImageConfig())
    assert images.ready(out)
    layer(base.path, "etc/os-release", "ID=debian\nVERSION=12\n")  # rebuilt in its place
    base.path.with_name(base.path.name + ".sha256").unlink()  # as a rebuild leaves it
    assert not images.ready(out)
    base.path.unlink()
    assert not images.ready(out)

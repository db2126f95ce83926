"""Images reach the real node's containerd without the layers it holds (hack/kfcluster/ociimport):
an image on the node's base layer imported as an OCI layout of its new layer alone, run by
containerd; and when a layer the import counted on is missing, every layer instead."""

from __future__ import annotations

import io
import re
import sys
import tarfile
import uuid
from pathlib import Path

import pytest
from tests.cases import REPO
from tests.e2e.conftest import node_control

sys.path.insert(0, str(REPO / "hack"))
from kfcluster.images import ImageConfig, Layer, _base_layer, write_image
from kfcluster.ociimport import oci_layout

TAG = "localhost/kubeforge/import-probe:test"


def image(tmp_path: Path, text: str) -> Path:
    """An image of the node's base layer and one layer holding /probe.txt (``text``: a new
    layer each time, one containerd cannot hold yet)."""
    top = tmp_path / f"{text}.layer.tar"
    with tarfile.open(top, "w") as tar:
        info = tarfile.TarInfo("probe.txt")
        info.size = len(text)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(text.encode()))
    layers = [Layer(_base_layer()), Layer(top)]
    return write_image(tmp_path / f"{text}.image.json", TAG, layers, ImageConfig(cmd=["sh"]))


def run_in(node, command: str) -> str:  # type: ignore[no-untyped-def]
    """What ``command`` prints in a container of the image, run by containerd itself."""
    name = f"import-probe-{uuid.uuid4().hex[:8]}"
    return str(node.ctr("run", "--rm", TAG, name, "sh", "-c", command, timeout=60).stdout)


@pytest.fixture
def node(real_node: str):  # type: ignore[no-untyped-def]
    node = node_control("node")
    yield node
    node.ctr("images", "rm", "--sync", TAG, check=False)


def test_only_the_new_layer_travels_and_the_image_runs(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = f"one {uuid.uuid4()}"
    built = image(tmp_path, text)
    held = node.ctr("content", "ls", "--quiet").stdout.split()
    base = f"sha256:{Layer(_base_layer()).digest()}"
    assert base in held  # the node's base image put it there
    sent = [name for name, _, _ in oci_layout(built, held)[1]]
    assert f"blobs/sha256/{base[7:]}" not in sent
    assert len([n for n in sent if n.startswith("blobs/")]) == 3  # config, manifest, new layer
    out = node.import_new_layers(built)
    assert f"unpacking {TAG}" in out
    # its config and both layers in the store (the base layer too), and unpacked
    check = node.ctr("images", "check", f"name=={TAG}").stdout
    assert re.search(r"complete \(3/3\).* true$", check.strip()), check
    assert run_in(node, "cat /probe.txt") == text


def test_a_layer_missing_from_containerd_sends_every_layer(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node.import_new_layers(image(tmp_path, f"one {uuid.uuid4()}"))
    text = f"two {uuid.uuid4()}"
    built = image(tmp_path, text)
    new = f"sha256:{Layer(tmp_path / f'{text}.layer.tar').digest()}"
    held = node.ctr("content", "ls", "--quiet").stdout.split()
    assert new not in held
    # told containerd holds the new layer, the layout leaves it out: containerd refuses it
    out = node.import_new_layers(built, [*held, new])
    assert f"unpacking {TAG}" in out
    assert new in node.ctr("content", "ls", "--quiet").stdout.split()
    assert run_in(node, "cat /probe.txt") == text

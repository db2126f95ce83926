"""When the operator's server-side apply of a child reads the child back, skips it, or sends it
(Kube.apply): no write when nothing changed, a read only when the pass's trigger could have
touched the child."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from kubeforge_operator.runtime.kube import Kube


class _Recording(Kube):
    """A Kube whose reads and applies are recorded, with the apiserver's answers given."""

    def __init__(self) -> None:
        super().__init__(api=SimpleNamespace())
        self.live: dict[str, dict[str, Any]] = {}
        self.reads: list[str] = []
        self.read_versions: list[str | None] = []
        self.applies: list[str] = []
        self._dynamic = SimpleNamespace(
            resources=SimpleNamespace(get=lambda **_: SimpleNamespace(server_side_apply=self._ssa))
        )

    def _ssa(self, body: dict[str, Any], name: str, **_: Any) -> Any:
        self.applies.append(name)
        stored = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": str(len(self.applies))},
        }
        self.live[name] = stored
        return SimpleNamespace(
            metadata=SimpleNamespace(resourceVersion=stored["metadata"]["resourceVersion"]),
            to_dict=lambda: stored,
        )

    def get_child(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        not_older_than: str | None = None,
    ) -> Any:
        self.reads.append(name)
        self.read_versions.append(not_older_than)
        return self.live.get(name)


def _service(port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "nb", "namespace": "ns", "ownerReferences": [{"uid": "u1"}]},
        "spec": {"ports": [{"port": port}]},
    }


def test_an_unchanged_child_is_read_back_and_not_applied_again() -> None:
    kube = _Recording()
    assert kube.apply(_service())  # first time: applied without a read
    assert kube.reads == []
    assert not kube.apply(_service())
    assert kube.reads == ["nb"]
    # from the apiserver's watch cache, at least as new as the apply it checks
    assert kube.read_versions == ["1"]
    assert kube.applies == ["nb"]


def test_a_child_deleted_by_someone_else_is_applied_again_when_read_back() -> None:
    kube = _Recording()
    kube.apply(_service())
    del kube.live["nb"]
    assert kube.apply(_service())
    assert kube.applies == ["nb", "nb"]


def test_without_read_back_an_unchanged_manifest_costs_no_call_but_a_changed_one_is_applied() -> (
    None
):
    kube = _Recording()
    kube.apply(_service())
    del kube.live["nb"]  # not seen: a pass that cannot have touched the child trusts memory
    assert not kube.apply(_service(), read_back=False)
    assert kube.reads == []
    assert kube.applies == ["nb"]
    assert kube.apply(_service(port=8888), read_back=False)  # the spec asks for something new
    assert kube.applies == ["nb", "nb"]
    kube.forget_owner("u1")  # the owner was deleted and made again: nothing is trusted
    assert kube.apply(_service(port=8888), read_back=False)

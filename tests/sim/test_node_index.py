"""The pods-by-node index: lists through it equal lists by full scan, at every revision, page by page.

The store is driven with random creates, node moves, bindings, deletions and compactions; every list is read twice
(through the index and by scanning every object) and both are checked against a naive model that keeps a full copy
of every revision. Over HTTP, the real kubectl and a paginated client see each node's pods as the test wrote them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.resources import lookup
from nodemeta.sim.selectors import FieldSelector, LabelSelector
from nodemeta.sim.store import SNAPSHOT_LIMIT, Expired, Page, Store, decode_continue
from nodemeta.sim.watch import WatchFilter
from tests.sim.test_kubectl import Kubectl

PODS = lookup("", "v1", "pods")
assert PODS is not None

NODES = ["n1", "n2", "n3", ""]
NAMES = st.sampled_from([f"p{i}" for i in range(10)])
NAMESPACES = st.sampled_from(["a", "b"])
# Field selectors that pin spec.nodeName (so the index is used), alone or with other requirements.
FIELD_SELECTORS = st.sampled_from(
    [
        "spec.nodeName=n1",
        "spec.nodeName=n2",
        "spec.nodeName=",
        "spec.nodeName=gone",
        "spec.nodeName=n1,metadata.name!=p3",
        "spec.nodeName=n3,metadata.namespace=b",
        "spec.host=n2",
        "spec.nodeName=n1,spec.nodeName=n2",
        "spec.nodeName=n2,status.phase=Running",
    ]
)
LABEL_SELECTORS = st.sampled_from(["", "tier=web", "tier!=web"])


def pod(ns: str, name: str, node: str, tier: str, phase: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "labels": {"tier": tier}},
        "spec": {"nodeName": node},
        "status": {"phase": phase},
    }


def naive_match(obj: dict[str, Any], fields: str, labels: str) -> bool:
    """The selectors evaluated by hand on the plain object, independently of selectors.py."""
    values = {
        "spec.nodeName": obj["spec"].get("nodeName", ""),
        "spec.host": obj["spec"].get("nodeName", ""),
        "metadata.name": obj["metadata"]["name"],
        "metadata.namespace": obj["metadata"]["namespace"],
        "status.phase": obj["status"].get("phase", ""),
    }
    for term in fields.split(","):
        if "!=" in term:
            key, value = term.split("!=")
            if values[key] == value:
                return False
        else:
            key, value = term.split("=")
            if values[key] != value:
                return False
    tier = obj["metadata"]["labels"].get("tier")
    if labels == "tier=web":
        return tier == "web"
    if labels == "tier!=web":
        return tier != "web"
    return True


class NodeIndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = Store([PODS], history_limit=25)
        self.bucket = self.store.bucket(PODS)
        self.model: dict[str, dict[str, Any]] = {}
        self.snapshots: dict[int, dict[str, dict[str, Any]]] = {self.store.rv: {}}

    def _snap(self) -> None:
        self.snapshots[self.store.rv] = {k: dict(v) for k, v in self.model.items()}

    def _put(self, obj: dict[str, Any]) -> None:
        stored = self.store.put(self.bucket, obj)
        self.model[stored.key] = stored.decode()
        self._snap()

    @rule(
        ns=NAMESPACES,
        name=NAMES,
        node=st.sampled_from(NODES),
        tier=st.sampled_from(["web", "db"]),
        phase=st.sampled_from(["Pending", "Running"]),
    )
    def write(self, ns: str, name: str, node: str, tier: str, phase: str) -> None:
        """Create, or replace (possibly moving the pod to another node)."""
        self._put(pod(ns, name, node, tier, phase))

    @precondition(lambda self: any(not o["spec"]["nodeName"] for o in self.model.values()))
    @rule(data=st.data(), node=st.sampled_from(["n1", "n2", "n3"]))
    def bind(self, data: st.DataObject, node: str) -> None:
        key = data.draw(st.sampled_from(sorted(k for k, o in self.model.items() if not o["spec"]["nodeName"])))
        obj = self.model[key]
        obj = {**obj, "spec": {**obj["spec"], "nodeName": node}}
        self._put(obj)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.model)))
        self.store.remove(self.bucket, key)
        del self.model[key]
        self._snap()

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        self.store.compact(data.draw(st.sampled_from(sorted(self.snapshots))))

    @rule(
        data=st.data(),
        fields=FIELD_SELECTORS,
        labels=LABEL_SELECTORS,
        ns=st.sampled_from(["", "a", "b"]),
        limit=st.integers(0, 3),
        writes_between=st.lists(st.tuples(NAMESPACES, NAMES, st.sampled_from([*NODES, None])), max_size=4),
    )
    def list_both_ways(
        self,
        data: st.DataObject,
        fields: str,
        labels: str,
        ns: str,
        limit: int,
        writes_between: list[tuple[str, str, str | None]],
    ) -> None:
        """A paginated list through the index and by scan, with writes between pages, against the model."""
        rv = data.draw(st.sampled_from(sorted(self.snapshots)))
        field_selector = FieldSelector.parse(fields).check_supported(PODS.selectable_fields, PODS.field_aliases)
        flt = WatchFilter(namespace=ns, labels=LabelSelector.parse(labels) if labels else None, fields=field_selector)
        index_value = flt.index_value(self.bucket)
        assert index_value is not None
        prefix = f"{ns}/" if ns else ""
        expected = sorted(
            key
            for key, obj in self.snapshots[rv].items()
            if key.startswith(prefix) and naive_match(obj, fields, labels)
        )
        got: list[str] = []
        start = ""
        pending = list(writes_between)
        while True:
            indexed, scanned = (self._page(rv, start, prefix, limit, flt, value) for value in (index_value, None))
            if scanned is None:
                assert indexed is None
                assert rv < self.bucket.floor
                return
            assert indexed is not None
            assert [s.key for s in indexed.items] == [s.key for s in scanned.items]
            assert all(a is b for a, b in zip(indexed.items, scanned.items, strict=True))
            assert (indexed.continue_token, indexed.rv, indexed.remaining) == (
                scanned.continue_token,
                scanned.rv,
                scanned.remaining,
            )
            got += [s.key for s in indexed.items]
            if not indexed.continue_token:
                break
            token_rv, start = decode_continue(indexed.continue_token)
            assert token_rv == rv
            if pending:
                w_ns, w_name, w_node = pending.pop()
                key = f"{w_ns}/{w_name}"
                if w_node is None:
                    if key in self.model:
                        self.store.remove(self.bucket, key)
                        del self.model[key]
                        self._snap()
                else:
                    self._put(pod(w_ns, w_name, w_node, "web", "Running"))
        assert got == expected

    def _page(self, rv: int, start: str, prefix: str, limit: int, flt: WatchFilter, value: str | None) -> Page | None:
        try:
            return self.store.page(
                self.bucket, rv=rv, start=start, prefix=prefix, limit=limit, accept=flt.matches,
                count_remaining=False, index_value=value,
            )  # fmt: skip
        except Expired:
            return None

    @rule(data=st.data(), ns=st.sampled_from(["", "a"]), limit=st.integers(1, 3))
    def remaining_count_at_old_revision(self, data: st.DataObject, ns: str, limit: int) -> None:
        """Unfiltered pages at an old revision count what is left from the cached snapshot."""
        rv = data.draw(st.sampled_from(sorted(self.snapshots)))
        prefix = f"{ns}/" if ns else ""
        total = sum(1 for key in self.snapshots[rv] if key.startswith(prefix))
        try:
            page = self.store.page(self.bucket, rv=rv, prefix=prefix, limit=limit)
        except Expired:
            assert rv < self.bucket.floor
            return
        if page.continue_token:
            assert page.remaining == total - limit
        else:
            assert len(page.items) == total

    @invariant()
    def index_matches_live_objects(self) -> None:
        grouped: dict[str, list[str]] = {}
        for key, obj in sorted(self.model.items()):
            grouped.setdefault(obj["spec"].get("nodeName", ""), []).append(key)
        assert {value: list(keys) for value, keys in self.bucket.by_value.items()} == grouped

    @invariant()
    def snapshots_are_bounded(self) -> None:
        assert len(self.bucket._snapshots) <= SNAPSHOT_LIMIT


# No explain phase: its line tracing multiplies the run time on Python 3.11 when a failure is being shrunk.
NodeIndexMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
)
test_node_index_machine = NodeIndexMachine.TestCase


def test_lists_without_an_index_field_are_refused() -> None:
    nodes = lookup("", "v1", "nodes")
    assert nodes is not None
    store = Store([nodes], history_limit=5)
    with pytest.raises(ValueError, match="no index"):
        store.page(store.bucket(nodes), rv=store.rv, index_value="x")


# -- over HTTP ----------------------------------------------------------------------------------------------------


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[SimServer, Kubectl, aiohttp.ClientSession]]:
    async with SimServer(SimSettings(nodes=3, controllers=())) as server:
        path = server.write_kubeconfig(tmp_path / "kubeconfig")
        async with aiohttp.ClientSession(base_url=server.url) as session:
            yield server, Kubectl(path, tmp_path), session


async def _create(session: aiohttp.ClientSession, ns: str, name: str, node: str) -> None:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "nginx"}], **({"nodeName": node} if node else {})},
    }
    async with session.post(f"/api/v1/namespaces/{ns}/pods", json=body) as resp:
        assert resp.status == 201, await resp.text()


async def _setup(session: aiohttp.ClientSession) -> dict[str, set[tuple[str, str]]]:
    """Pods on three nodes in two namespaces, some bound later, some deleted: returns each node's pods."""
    for ns in ("east", "west"):
        async with session.post("/api/v1/namespaces", json={"metadata": {"name": ns}}) as resp:
            assert resp.status == 201
    truth: dict[str, set[tuple[str, str]]] = {"node-1": set(), "node-2": set(), "node-3": set(), "": set()}
    for i in range(12):
        ns = "east" if i % 2 else "west"
        node = ["node-1", "node-2", "node-3", ""][i % 4]
        await _create(session, ns, f"web-{i}", node)
        truth[node].add((ns, f"web-{i}"))
    for ns, name in sorted(truth[""])[:2]:
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"name": "node-1"}}
        async with session.post(f"/api/v1/namespaces/{ns}/pods/{name}/binding", json=binding) as resp:
            assert resp.status == 201, await resp.text()
        truth[""].discard((ns, name))
        truth["node-1"].add((ns, name))
    victim = sorted(truth["node-2"])[0]
    async with session.delete(f"/api/v1/namespaces/{victim[0]}/pods/{victim[1]}?gracePeriodSeconds=0") as resp:
        assert resp.status == 200
    truth["node-2"].discard(victim)
    return truth


@pytest.mark.kubectl
async def test_kubectl_lists_each_nodes_pods(cluster: tuple[SimServer, Kubectl, aiohttp.ClientSession]) -> None:
    _, kubectl, session = cluster
    truth = await _setup(session)
    for node in ("node-1", "node-2", "node-3"):
        for chunk in ("--chunk-size=2", "--chunk-size=500"):
            listing = await kubectl.json("get", "pods", "-A", "--field-selector", f"spec.nodeName={node}", chunk)
            got = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listing["items"]]
            assert got == sorted(truth[node])
    _, out, _ = await kubectl.run("get", "pods", "-n", "east", "--field-selector", "spec.nodeName=node-1", "-o", "name")
    assert out.split() == [f"pod/{name}" for ns, name in sorted(truth["node-1"]) if ns == "east"]
    selector = "spec.nodeName=node-3,metadata.namespace=west"
    listing = await kubectl.json("get", "pods", "-A", "--field-selector", selector)
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listing["items"]] == sorted(
        p for p in truth["node-3"] if p[0] == "west"
    )


async def test_continued_node_list_reads_the_first_pages_revision(
    cluster: tuple[SimServer, Kubectl, aiohttp.ClientSession],
) -> None:
    """Pods moved onto, bound to and deleted from the node after the first page do not change the later pages."""
    _, _, session = cluster
    truth = await _setup(session)
    url = "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&limit=2"
    async with session.get(url) as resp:
        first = json.loads(await resp.read())
    listed = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in first["items"]]
    rv = first["metadata"]["resourceVersion"]
    # After the first page: delete a pod of node-1 not listed yet, bind one to it, create one on it.
    later = sorted(truth["node-1"] - set(listed))
    async with session.delete(f"/api/v1/namespaces/{later[0][0]}/pods/{later[0][1]}?gracePeriodSeconds=0") as resp:
        assert resp.status == 200
    unbound = sorted(truth[""])[0]
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": unbound[1]}, "target": {"name": "node-1"}}
    async with session.post(f"/api/v1/namespaces/{unbound[0]}/pods/{unbound[1]}/binding", json=binding) as resp:
        assert resp.status == 201
    await _create(session, "west", "zz-late", "node-1")
    token = first["metadata"]["continue"]
    while token:
        async with session.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&limit=2&continue={token}") as resp:
            assert resp.status == 200
            page = json.loads(await resp.read())
        assert page["metadata"]["resourceVersion"] == rv
        listed += [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in page["items"]]
        token = page["metadata"].get("continue", "")
    assert listed == sorted(truth["node-1"])
    async with session.get("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1") as resp:
        now = json.loads(await resp.read())
    expected_now = sorted((truth["node-1"] - {later[0]}) | {unbound, ("west", "zz-late")})
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in now["items"]] == expected_now


async def test_watch_without_revision_starts_with_exactly_the_nodes_pods(
    cluster: tuple[SimServer, Kubectl, aiohttp.ClientSession],
) -> None:
    """The initial ADDED events of a node-filtered watch come from the index: the node's pods, in key order."""
    _, _, session = cluster
    truth = await _setup(session)
    for node in ("node-1", "node-2", ""):
        url = f"/api/v1/pods?watch=1&fieldSelector=spec.nodeName%3D{node}&timeoutSeconds=1"
        async with session.get(url) as resp:
            events = [json.loads(line) for line in (await resp.read()).splitlines() if line]
        got = [(e["object"]["metadata"]["namespace"], e["object"]["metadata"]["name"]) for e in events]
        assert {e["type"] for e in events} <= {"ADDED"}
        assert got == sorted(truth[node])

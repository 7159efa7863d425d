"""The parser and the evaluation never raise, whatever the bytes, and what they accept is well-formed."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from nodemeta.cni.conf import DirEntry, EntryKind, Listing, RuntimeKind, RuntimeModel, evaluate, parse_file

NAMES = st.sampled_from(["10-x.conf", "10-x.conflist", "10-x.json", "00-y.conflist", "05-z.conf"])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "type",
                    "Type",
                    "plugins",
                    "cniVersion",
                    "cniVersions",
                    "delegates",
                    "disableCheck",
                    "loadOnlyInlinedPlugins",
                    "ipam",
                    "x",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


def check_parsed(name: str, data: bytes) -> None:
    parsed = parse_file(DirEntry(name, EntryKind.FILE, data))
    assert parsed.valid == (parsed.problem is None)
    if parsed.network is not None:
        assert parsed.network.plugins and all(p.type for p in parsed.network.plugins)
        json.dumps([parsed.network.name, parsed.network.types])  # printable and encodable
    else:
        assert parsed.detail


@settings(max_examples=400, deadline=None)
@given(NAMES, st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(name: str, data: bytes) -> None:
    check_parsed(name, data)


@settings(max_examples=400, deadline=None)
@given(NAMES, json_values)
def test_arbitrary_json_never_raises(name: str, value: object) -> None:
    check_parsed(name, json.dumps(value).encode())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(NAMES, st.binary(max_size=80) | json_values.map(lambda v: json.dumps(v).encode())),
        max_size=5,
        unique_by=lambda t: t[0],
    ),
    st.sampled_from(list(RuntimeKind)),
    st.integers(0, 3),
)
def test_evaluation_never_raises_and_the_winner_is_valid(
    files: list[tuple[str, bytes]], kind: RuntimeKind, max_conf: int
) -> None:
    listing = Listing(tuple(DirEntry(n, EntryKind.FILE, d) for n, d in files))
    state = evaluate(listing, conf_dir="/d", model=RuntimeModel(kind, max_conf), required=("linkerd-cni",))
    assert len(state.files) == len(files)
    if state.winner is not None:
        assert state.winner.valid and not state.selection.fatal
    else:
        assert state.selection.fatal


def test_deep_nesting_and_lone_surrogates_are_values() -> None:
    check_parsed("10-x.conflist", b"[" * 100_000)
    parsed = parse_file(DirEntry("10-x.conf", EntryKind.FILE, b'{"type": "a\\ud800b", "name": "\\udfff"}'))
    assert parsed.network is not None and parsed.network.types[0].encode()

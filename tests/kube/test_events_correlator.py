"""The pure correlator and token bucket: client-go's keys, window and spam filter, without an API server."""

from __future__ import annotations

import pytest

from nodemeta.kube import AGGREGATE_PREFIX, Correlator, CorrelatorSettings, ObjectReference, Occurrence, TokenBucket

NODE = ObjectReference.node("node-1")
T0 = 1_700_000_000.0


def occ(
    message: str, at: float = T0, reason: str = "R", type: str = "Warning", ref: ObjectReference = NODE
) -> Occurrence:
    return Occurrence(ref, type, reason, message, at)


def test_key_includes_reason_type_and_object() -> None:
    c = Correlator("nodemeta-agent", "node-1")
    first = c.observe(occ("m"))
    assert first is not None and not first.update
    for other in (occ("m", reason="S"), occ("m", type="Normal"), occ("m", ref=ObjectReference.node("node-2"))):
        write = c.observe(other)
        assert write is not None and not write.update, other
    repeat = c.observe(occ("m", at=T0 + 1))
    assert repeat is not None and repeat.update and repeat.name == first.name
    assert repeat.patch == {"count": 2, "lastTimestamp": "2023-11-14T22:13:21Z", "message": "m"}


def test_aggregation_window_starts_again_after_quiet() -> None:
    c = Correlator("a", "h", CorrelatorSettings(aggregate_messages=3, aggregate_window=60))
    assert [c.observe(occ(f"m{i}")) is not None for i in range(2)] == [True, True]
    combined = c.observe(occ("m2"))
    assert combined is not None and combined.event["message"] == AGGREGATE_PREFIX + "m2"
    # 61 s of quiet: distinct messages are counted from zero again.
    fresh = c.observe(occ("m3", at=T0 + 61))
    assert fresh is not None and fresh.event["message"] == "m3" and not fresh.update


def test_long_messages_are_cut() -> None:
    c = Correlator("a", "h", CorrelatorSettings(message_limit=20))
    write = c.observe(occ("x" * 100))
    assert write is not None and write.event["message"] == "x" * 17 + "..."


def test_event_names_never_repeat() -> None:
    c = Correlator("a", "h", CorrelatorSettings(spam_burst=100))
    writes = [c.observe(occ(f"m{i}", reason=f"R{i}")) for i in range(50)]  # all at the same instant
    names = {w.name for w in writes if w is not None}
    assert len(names) == 50


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=0.5, burst=2, now=0.0)
    assert [bucket.try_take(0.0) for _ in range(3)] == [True, True, False]
    assert not bucket.try_take(1.0)
    assert bucket.try_take(2.0)
    assert bucket.available(100.0) == 2.0
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1, now=0)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        CorrelatorSettings(spam_burst=0)
    with pytest.raises(ValueError):
        Correlator("", "h")

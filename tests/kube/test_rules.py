"""The pure decisions of the layer: which resourceVersion to list from, what a watch failure leads to, backoff
delays, settings validation, error mapping and the two-step watch-event decoding."""

from __future__ import annotations

import dataclasses
import random

import pytest

from nodemeta.kube import (
    ApiError,
    Backoff,
    BackoffSettings,
    BadRequest,
    Bookmark,
    Change,
    Codec,
    ConfigError,
    ConnectionLost,
    DecodeError,
    Expired,
    Failure,
    Forbidden,
    Pod,
    ReflectorSettings,
    ServerError,
    Throttled,
    WatchStalled,
    relist_resource_version,
)
from nodemeta.kube.codec import decode_status, status_error
from nodemeta.kube.errors import api_error
from nodemeta.kube.reflector import Retry, after_watch_error


@pytest.mark.parametrize(
    ("last_seen", "unavailable", "expected"),
    [
        ("", False, ("", "")),  # first list: a consistent read of the latest state
        ("", True, ("", "")),
        ("120", False, ("120", "NotOlderThan")),  # relist after an ordinary failure: never older than the cache
        ("120", True, ("", "")),  # the server no longer has 120: latest state
    ],
)
def test_relist_resource_version(last_seen: str, unavailable: bool, expected: tuple[str, str]) -> None:
    assert relist_resource_version(last_seen, unavailable) == expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (Expired(410, "Expired", "too old resource version: 1 (5)"), Retry("expired", relist=True, unavailable=True)),
        (Expired(410, "Gone", "old server"), Retry("expired", relist=True, unavailable=True)),
        (
            ServerError(504, "Timeout", "Timeout: Too large resource version: 9, current: 5"),
            Retry("expired", relist=True, unavailable=True),
        ),
        (Throttled(429, "", "Too many requests", retry_after=1), Retry("throttled", relist=False)),
        (ServerError(503, "ServiceUnavailable", ""), Retry("server-error", relist=False)),
        (WatchStalled("silent"), Retry("stalled", relist=False)),
        (ConnectionLost("reset"), Retry("dropped", relist=False)),
        (Forbidden(403, "Forbidden", "rbac"), Retry("error", relist=True)),
        (BadRequest(400, "BadRequest", "bad selector"), Retry("error", relist=True)),
        (ConfigError("exec plugin failed"), Retry("error", relist=True)),
    ],
)
def test_after_watch_error(error: ApiError, expected: Retry) -> None:
    assert after_watch_error(error) == expected


def test_backoff_grows_caps_jitters_and_resets_after_a_healthy_period() -> None:
    now = [0.0]
    settings = BackoffSettings(initial=1.0, maximum=8.0, factor=2.0, jitter=0.5, reset_after=60.0)
    backoff = Backoff(settings, clock=lambda: now[0], rng=random.Random(1))
    delays = []
    for _ in range(7):
        now[0] += 1
        delays.append(backoff.next_delay())
    nominal = [1, 2, 4, 8, 8, 8, 8]
    for delay, limit in zip(delays, nominal, strict=True):
        assert limit / 2 <= delay <= limit
    now[0] += 61  # a minute without failures
    assert backoff.next_delay() <= 1.0


def test_backoff_survives_endless_failures() -> None:
    backoff = Backoff(BackoffSettings(), clock=lambda: 0.0)
    for _ in range(5000):
        assert backoff.next_delay() <= 30.0


@pytest.mark.parametrize(
    "change",
    [
        {"page_size": 0},
        {"watch_timeout_min": 10, "watch_timeout_max": 5},
        {"inactivity_timeout": 0},
        {"backoff": "invalid"},
    ],
)
def test_invalid_settings_are_rejected(change: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError, AttributeError)):
        if change.get("backoff") == "invalid":
            BackoffSettings(initial=5, maximum=1)
        else:
            dataclasses.replace(ReflectorSettings(), **change)  # type: ignore[arg-type]


def test_api_errors_map_to_the_most_specific_class() -> None:
    assert type(api_error(410)) is Expired
    assert type(api_error(429)) is Throttled
    assert type(api_error(502)) is ServerError
    assert type(api_error(418)) is ApiError


def test_status_bodies_become_errors() -> None:
    body = (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Timeout: Too large '
        b'resource version: 9, current: 5","reason":"Timeout","details":{"causes":[{"reason":'
        b'"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1},"code":504}'
    )
    status = decode_status(body)
    assert status is not None
    err = status_error(status)
    assert isinstance(err, ServerError)
    assert err.resource_version_too_large
    assert err.retry_after == 1
    assert decode_status(b"Too many requests, please try again later.\n") is None


def test_watch_events_decode_in_two_steps() -> None:
    codec = Codec(Pod)
    added = codec.decode_event(
        b'{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","namespace":"n",'
        b'"resourceVersion":"7","uid":"u","ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet",'
        b'"name":"rs","uid":"r","controller":true}]},"spec":{"nodeName":"node-1","hostNetwork":true,"containers":'
        b'[{"name":"c","image":"i","ports":[{"containerPort":80,"protocol":"TCP"}]}]},"status":{"phase":"Running",'
        b'"podIP":"10.0.0.1","podIPs":[{"ip":"10.0.0.1"},{"ip":"fd00::1"}],"hostIP":"192.168.0.1",'
        b'"containerStatuses":[{"name":"c","containerID":"containerd://abc","ready":true,"restartCount":2}]}}}'
    )
    assert isinstance(added, Change)
    pod = added.object
    assert added.resource_version == "7"
    assert pod.spec.node_name == "node-1"
    assert pod.status.pod_ip == "10.0.0.1"
    assert [ip.ip for ip in pod.status.pod_ips] == ["10.0.0.1", "fd00::1"]
    ref = pod.metadata.controller_ref()
    assert ref is not None
    assert ref.kind == "ReplicaSet"
    # A real bookmark carries null fields the Pod model would reject; it is read as a bookmark only.
    bookmark = codec.decode_event(
        b'{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12746",'
        b'"creationTimestamp":null,"annotations":{"k8s.io/initial-events-end":"true"}},"spec":{"containers":null},'
        b'"status":{}}}'
    )
    assert bookmark == Bookmark("12746", {"k8s.io/initial-events-end": "true"})
    error = codec.decode_event(
        b'{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"too old resource version: 1 (5)","reason":"Expired","code":410}}'
    )
    assert isinstance(error, Failure)
    assert isinstance(status_error(error.status), Expired)


@pytest.mark.parametrize(
    "line",
    [b"not json", b'{"type":"ADDED"}', b'{"type":"SURPRISE","object":{}}', b'{"type":"ADDED","object":[1]}'],
)
def test_bad_watch_lines_are_decode_errors(line: bytes) -> None:
    with pytest.raises(DecodeError):
        Codec(Pod).decode_event(line)

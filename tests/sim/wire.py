"""Small helpers for protocol tests: JSON requests and watch-stream reading over real HTTP."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp


async def call(
    api: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    *,
    ctype: str = "application/json",
    headers: dict[str, str] | None = None,
    **params: Any,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    data = None
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    hdrs = {"Content-Type": ctype, **(headers or {})}
    async with api.request(method, path, data=data, headers=hdrs, params={k: str(v) for k, v in params.items()}) as r:
        raw = await r.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode()
        return r.status, parsed, r


async def create(api: aiohttp.ClientSession, path: str, obj: dict[str, Any]) -> dict[str, Any]:
    status, body, _ = await call(api, "POST", path, obj)
    assert status == 201, body
    return body  # type: ignore[no-any-return]


def pod(name: str, ns: str = "default", labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}], **spec},
    }


class WatchReader:
    """Reads a watch response line by line with a per-event timeout."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 5.0) -> dict[str, Any] | None:
        line = await asyncio.wait_for(self.response.content.readline(), timeout)
        if not line:
            return None
        return json.loads(line)  # type: ignore[no-any-return]

    async def until(self, predicate: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        while True:
            event = await self.next(timeout)
            assert event is not None, f"stream ended before the expected event; saw {seen}"
            seen.append(event)
            if predicate(event):
                return seen

    async def rest(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while (event := await self.next(timeout)) is not None:
            events.append(event)
        return events

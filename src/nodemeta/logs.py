"""Logging set-up shared by every command: JSON lines on stderr through structlog.

Each line is one compact JSON object whose first keys are `level`, `ts`, `logger`, `msg`, then the event's own
keys in the order given: the Go k8s-metacollector's zap production format, which its e2e tests and people's log
pipelines match as substrings (`"logger":"broker.grpc-server","msg":"received watch request","node":"n1"`).
`ts` is seconds since the epoch, as zap writes it. Records from the standard library's loggers (asyncio,
aiohttp) get the same shape, so stderr stays one JSON object per line.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["configure"]

# Keys every line starts with, in this order.
_HEAD = ("level", "ts", "logger", "msg")


def _timestamp(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    event["ts"] = time.time()
    return event


def _zap_order(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """Rename structlog's `event` to `msg` and put the head keys first; the rest keep their order."""
    if "event" in event:
        event["msg"] = event.pop("event")
    head = {key: event.pop(key) for key in _HEAD if key in event}
    head.update(event)
    return head


def _json(event: EventDict, **_kw: Any) -> str:
    return orjson.dumps(event, default=repr).decode()


def configure(level: str = "info", json: bool = True) -> None:
    """Send structlog and standard-library records to stderr at `level` and above, as JSON lines (or, with
    `json=False`, as human-readable lines)."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    stamp: list[Processor] = [structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, _timestamp]
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_json) if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=stamp,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _zap_order if json else _console_order,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    structlog.configure(
        processors=[*stamp, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def _console_order(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    event.pop("ts", None)
    return event

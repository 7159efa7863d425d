"""Bounding label and annotation values from the runtime: long values are cut, with a marker, never dropped. Pure.

A consumer that sees the marker at the end of a value knows it holds a prefix of the real one; a value that is
exactly `max_value` characters long and ends with the marker is one the agent cut.
"""

from __future__ import annotations

from collections.abc import Mapping

from nodemeta.agent.settings import TruncateSettings

__all__ = ["truncate_map", "truncate_value"]


def truncate_value(value: str, settings: TruncateSettings) -> str:
    """`value` itself when short enough, else its first characters followed by the marker, `max_value` in all."""
    if len(value) <= settings.max_value:
        return value
    return value[: settings.max_value - len(settings.marker)] + settings.marker


def truncate_map(values: Mapping[str, str], settings: TruncateSettings) -> Mapping[str, str]:
    """The mapping itself when every value fits (no copy), else a copy with the long values cut."""
    limit = settings.max_value
    if all(len(v) <= limit for v in values.values()):
        return values
    return {k: truncate_value(v, settings) for k, v in values.items()}

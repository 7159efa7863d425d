"""Long label and annotation values are cut with a marker, never dropped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodemeta.agent.settings import SettingsError, TruncateSettings
from nodemeta.agent.truncate import truncate_map, truncate_value

S = TruncateSettings(max_value=20, marker="...[truncated]")


def test_short_values_unchanged_and_not_copied() -> None:
    labels = {"app": "x" * 20}
    assert truncate_map(labels, S) is labels


def test_long_value_cut_with_marker() -> None:
    out = truncate_map({"a": "y" * 21, "b": "ok"}, S)
    assert out == {"a": "yyyyyy...[truncated]", "b": "ok"}
    assert len(out["a"]) == 20


def test_default_limit() -> None:
    d = TruncateSettings()
    assert truncate_value("z" * 5000, d) == "z" * (1024 - len(d.marker)) + d.marker
    with pytest.raises(SettingsError):
        TruncateSettings(max_value=5, marker="...[truncated]")


@given(st.text(max_size=60))
def test_property_bounded_prefix(value: str) -> None:
    out = truncate_value(value, S)
    assert len(out) <= S.max_value
    if len(value) <= S.max_value:
        assert out == value
    else:
        assert out.endswith(S.marker) and value.startswith(out[: -len(S.marker)])

"""A `lab` test is skipped where the lab cannot run, and fails instead when NODEMETA_REQUIRE_LAB=1."""

from __future__ import annotations

import pytest

from tests.lab import plugin


@pytest.fixture
def missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "unavailable_reason", lambda: "containerd lab unavailable, missing: binary crun")


@pytest.mark.lab
def test_skipped_without_prerequisites(
    missing: None, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(plugin.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="missing: binary crun"):
        plugin.pytest_runtest_setup(request.node)


@pytest.mark.lab
def test_failed_when_required(missing: None, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugin.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="NODEMETA_REQUIRE_LAB=1"):
        plugin.pytest_runtest_setup(request.node)


def test_unmarked_tests_are_not_gated(missing: None, request: pytest.FixtureRequest) -> None:
    plugin.pytest_runtest_setup(request.node)


def test_lab_fixtures_mark_their_tests(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("lab") is None
    assert {"lab", "clean_lab", "lab_factory"} == plugin.LAB_FIXTURES

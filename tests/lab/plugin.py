"""pytest plugin for the containerd lab: its fixtures and the gating of tests marked `lab`.

Registered for the whole suite in tests/conftest.py (`pytest_plugins`), so any test directory can use
the fixtures without importing them (importing fixtures into several conftest files would start one containerd
per importing directory):

- `lab` (session): the shared ContainerdLab, started on first use and closed at the end of the run.
- `clean_lab` (function): the same lab, with every sandbox removed, the default conflist restored and containerd
  running again after the test: use it whenever a test creates pods, rewrites the conf dir or stops containerd.
- `lab_factory` (session): a context-manager factory for a private lab (`with lab_factory() as own: ...`), for a
  module that needs a containerd of its own (e.g. one started with a different conf dir content).

Any test using these fixtures is marked `lab` automatically (`pytest -m lab` runs just them). A `lab` test is
skipped, with the missing prerequisites as the reason, when the machine cannot run the lab (not root, binaries or
CNI plugins missing); with NODEMETA_REQUIRE_LAB=1 in the environment (CI) it fails instead.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator

import pytest

from tests.lab.harness import ContainerdLab, missing_prerequisites

REQUIRE_ENV = "NODEMETA_REQUIRE_LAB"
LabFactory = Callable[..., contextlib.AbstractContextManager[ContainerdLab]]
LAB_FIXTURES = frozenset({"lab", "clean_lab", "lab_factory"})


def lab_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


@functools.cache
def unavailable_reason() -> str:
    missing = missing_prerequisites()
    return "containerd lab unavailable, missing: " + ", ".join(missing) if missing else ""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("lab") is None:
        return
    reason = unavailable_reason()
    if not reason:
        return
    if lab_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lab_factory(tmp_path_factory: pytest.TempPathFactory) -> LabFactory:
    @contextlib.contextmanager
    def make(**kwargs: object) -> Iterator[ContainerdLab]:
        with ContainerdLab(tmp_path_factory.mktemp("containerd-lab"), **kwargs) as own:  # type: ignore[arg-type]
            yield own

    return make


@pytest.fixture(scope="session")
def lab(lab_factory: LabFactory) -> Iterator[ContainerdLab]:
    with lab_factory() as shared:
        yield shared


@pytest.fixture
def clean_lab(lab: ContainerdLab) -> Iterator[ContainerdLab]:
    yield lab
    if not lab.containerd_running:
        lab.start_containerd()
    lab.remove_all_pods()
    for path in lab.conf_dir.iterdir():
        path.unlink()
    lab.write_conflist(lab.default_conflist())

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
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from tests.lab.harness import ContainerdLab, LabError, missing_prerequisites

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
    # The configuration first: a sandbox made (or refused) under a broken one can only be torn down (CNI DEL)
    # once containerd has loaded a working network again.
    for path in lab.conf_dir.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    default = lab.default_conflist()
    lab.write_conflist(default)
    deadline = time.monotonic() + 20
    while default["name"] not in _loaded_networks(lab) and time.monotonic() < deadline:
        time.sleep(0.05)
    lab.remove_all_pods()


def _loaded_networks(lab: ContainerdLab) -> list[str]:
    try:
        networks = json.loads(lab.cni_config()).get("Networks") or []
    except (ValueError, LabError, grpc.RpcError):
        return []
    return [str(n.get("Config", {}).get("Name", "")) for n in networks if isinstance(n, dict)]

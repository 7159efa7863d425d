"""`nodemeta.kube.__all__` is exactly the union of its modules' `__all__`, sorted, and every name resolves."""

from __future__ import annotations

import importlib
import pkgutil

import nodemeta.kube


def module_exports() -> set[str]:
    names: set[str] = set()
    for info in pkgutil.iter_modules(nodemeta.kube.__path__):
        module = importlib.import_module(f"nodemeta.kube.{info.name}")
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"nodemeta.kube.{info.name} declares no __all__"
        for name in exported:
            assert hasattr(module, name), f"nodemeta.kube.{info.name}.__all__ names missing {name}"
        names.update(exported)
    return names


def test_every_name_resolves_and_is_sorted() -> None:
    exported = nodemeta.kube.__all__
    assert len(set(exported)) == len(exported)
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    for name in exported:
        assert getattr(nodemeta.kube, name) is not None


def test_package_exports_are_the_public_api_of_its_modules() -> None:
    # Module-level helpers that are public inside their module but deliberately not re-exported.
    internal = {
        "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR", "NOT_OLDER_THAN", "JSON",
        "METADATA_LIST_ACCEPT", "METADATA_WATCH_ACCEPT", "Retry", "after_watch_error", "decode_status",
        "status_error", "api_error", "BookmarkMeta", "BookmarkObject",
        "StatusCause", "StatusDetails", "WatchEvent",
    }  # fmt: skip
    assert set(nodemeta.kube.__all__) == module_exports() - internal
    assert internal <= module_exports()


def test_no_simulator_import() -> None:
    for info in pkgutil.iter_modules(nodemeta.kube.__path__):
        module = importlib.import_module(f"nodemeta.kube.{info.name}")
        assert module.__file__ is not None
        with open(module.__file__) as source:
            assert "nodemeta.sim" not in source.read(), info.name

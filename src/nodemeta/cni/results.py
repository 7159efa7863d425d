"""The libcni result cache: which CNI chain a pod sandbox was actually added with.

After every successful ADD, libcni (used by containerd and CRI-O) writes
`<cache dir>/results/<network name>-<container id>-<ifname>`: a JSON object with `kind` ("cniCacheV1"),
`containerId` (the sandbox id), `config` (the exact conflist bytes the runtime ran, base64-encoded as Go encodes a
byte slice), `ifName`, `networkName`, `netns` (libcni 1.2 and later), `cniArgs`, `capabilityArgs` and `result`.
The file is removed on DEL. So it answers, for a running pod, the question the live config directory cannot:
was the mesh plugin in the chain *when this pod was created*? If not, missing capture rules are the conflist
race's doing, not the mesh's.

Reading is synchronous file I/O on small files (call it with `asyncio.to_thread` from the event loop). Every file
that cannot be read or decoded becomes a `ResultCacheError` naming the file and the reason; a scan collects them
next to the good entries and never stops at one bad file.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "CacheEntry",
    "ResultCacheError",
    "ResultCacheSettings",
    "ScanResult",
    "chain_types",
    "entries_for",
    "parse_entry",
    "plugin_at_add",
    "read_entry",
    "scan",
]

CACHE_KIND = "cniCacheV1"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultCacheSettings:
    """Where the cache is and how much of it is read."""

    # libcni's default cache directory (`/var/lib/cni`) plus "results"; containerd and CRI-O keep the default.
    directory: str = "/var/lib/cni/results"
    # Where the host's root file system is mounted in the agent's container (e.g. "/host"); "" on the host.
    host_root: str = ""
    # An entry is a conflist plus an ADD result: a few KiB. 1 MiB refuses junk without reading all of it.
    max_file_size: int = 1 << 20

    @property
    def path(self) -> str:
        if not self.host_root:
            return self.directory
        return os.path.join(self.host_root, self.directory.lstrip("/"))


class ResultCacheError(Exception):
    """One cache file could not be read or decoded."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached ADD."""

    path: str
    container_id: str
    network_name: str
    if_name: str
    # The sandbox's network namespace path; "" when libcni predates 1.2.
    netns: str
    # The conflist bytes the runtime ran, decoded from base64, and the plugin types of its chain, in order.
    config: bytes
    plugin_types: tuple[str, ...]
    # The ADD result as JSON, None when absent.
    result: Mapping[str, Any] | None = None

    def has_plugin(self, plugin_type: str) -> bool:
        return plugin_type in self.plugin_types


@dataclass(frozen=True, slots=True)
class ScanResult:
    entries: tuple[CacheEntry, ...] = ()
    errors: tuple[ResultCacheError, ...] = ()


def chain_types(config: bytes) -> tuple[str, ...]:
    """The plugin types of a cached network config: a conflist's `plugins`, or a single plugin's `type`.

    Raises ValueError with the reason when the bytes are not such a config.
    """
    try:
        doc = orjson.loads(config)
    except orjson.JSONDecodeError as err:
        raise ValueError(f"config is not JSON: {err}") from err
    if not isinstance(doc, dict):
        raise ValueError("config is not a JSON object")
    plugins = doc.get("plugins")
    if plugins is None:
        kind = doc.get("type")
        if isinstance(kind, str) and kind:
            return (kind,)
        raise ValueError("config has neither a plugins list nor a type")
    if not isinstance(plugins, list):
        raise ValueError("config plugins is not a list")
    types: list[str] = []
    for i, plugin in enumerate(plugins):
        kind = plugin.get("type") if isinstance(plugin, dict) else None
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"config plugin {i} has no type")
        types.append(kind)
    return tuple(types)


def _string(doc: Mapping[str, Any], key: str, *, required: bool) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ValueError(f"{key} is missing or not a string")
    return value


def parse_entry(data: bytes, path: str) -> CacheEntry:
    """Decode one cache file's bytes. Raises ResultCacheError naming `path` and what is wrong."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise ResultCacheError(path, f"not JSON: {err}") from err
    if not isinstance(doc, dict):
        raise ResultCacheError(path, "not a JSON object")
    if doc.get("kind") != CACHE_KIND:
        raise ResultCacheError(path, f"kind is {doc.get('kind')!r}, not {CACHE_KIND!r}")
    try:
        container_id = _string(doc, "containerId", required=True)
        network_name = _string(doc, "networkName", required=True)
        if_name = _string(doc, "ifName", required=True)
        netns = _string(doc, "netns", required=False)
        encoded = _string(doc, "config", required=True)
    except ValueError as err:
        raise ResultCacheError(path, str(err)) from err
    try:
        config = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ResultCacheError(path, f"config is not base64: {err}") from err
    try:
        types = chain_types(config)
    except ValueError as err:
        raise ResultCacheError(path, str(err)) from err
    result = doc.get("result")
    return CacheEntry(
        path=path,
        container_id=container_id,
        network_name=network_name,
        if_name=if_name,
        netns=netns,
        config=config,
        plugin_types=types,
        result=result if isinstance(result, dict) else None,
    )


def read_entry(path: str, settings: ResultCacheSettings | None = None) -> CacheEntry:
    """Read and decode one cache file (a regular file of bounded size)."""
    limit = (settings or ResultCacheSettings()).max_file_size
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as err:
        raise ResultCacheError(path, f"cannot open: {err.strerror or err}") from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ResultCacheError(path, "not a regular file")
        if info.st_size > limit:
            raise ResultCacheError(path, f"larger than {limit} bytes")
        data = os.read(fd, limit + 1)
    except OSError as err:
        raise ResultCacheError(path, f"cannot read: {err.strerror or err}") from err
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ResultCacheError(path, f"larger than {limit} bytes")
    return parse_entry(data, path)


def _names(directory: str) -> tuple[list[str], ResultCacheError | None]:
    try:
        return sorted(os.listdir(directory)), None
    except FileNotFoundError:
        # No pod was ever added on this node (libcni creates the directory on the first ADD).
        return [], None
    except OSError as err:
        return [], ResultCacheError(directory, f"cannot list: {err.strerror or err}")


def scan(settings: ResultCacheSettings | None = None) -> ScanResult:
    """Every entry in the cache directory, plus an error per file that could not be used."""
    settings = settings or ResultCacheSettings()
    names, error = _names(settings.path)
    return _read_all([os.path.join(settings.path, n) for n in names], settings, [error] if error else [])


def entries_for(sandbox_id: str, settings: ResultCacheSettings | None = None) -> ScanResult:
    """The entries of one sandbox (one per network and interface it was added to).

    Files are picked by the `-<id>-` in their name and kept when their `containerId` says the same.
    """
    settings = settings or ResultCacheSettings()
    names, error = _names(settings.path)
    marker = f"-{sandbox_id}-"
    paths = [os.path.join(settings.path, n) for n in names if sandbox_id and marker in n]
    found = _read_all(paths, settings, [error] if error else [])
    return ScanResult(tuple(e for e in found.entries if e.container_id == sandbox_id), found.errors)


def _read_all(paths: Sequence[str], settings: ResultCacheSettings, errors: list[ResultCacheError]) -> ScanResult:
    entries: list[CacheEntry] = []
    for path in paths:
        try:
            entries.append(read_entry(path, settings))
        except ResultCacheError as err:
            errors.append(err)
    return ScanResult(tuple(entries), tuple(errors))


def plugin_at_add(entries: Sequence[CacheEntry], plugin_type: str, *, if_name: str | None = "eth0") -> bool | None:
    """Whether `plugin_type` was in the chain when the sandbox was added: None when no entry says either way.

    Only entries of interface `if_name` count (the pod's primary network; Multus adds more), unless it is None.
    """
    relevant = [e for e in entries if if_name is None or e.if_name == if_name]
    if not relevant:
        return None
    return any(e.has_plugin(plugin_type) for e in relevant)

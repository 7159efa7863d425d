"""Reading the CNI configuration directory and the plugin bin dirs into pure values (blocking file I/O).

The one place that touches the node's files for the config guard: every `OSError` becomes a value in the `Listing`
(a missing directory, an unreadable file) so nothing above it handles file-system exceptions. Reads are bounded:
a CNI configuration is a few kilobytes, so anything larger than `ScanLimits.max_file_bytes` is reported, not read.
Symlinks are followed, as libcni does; only regular files are opened (a FIFO would block the reader).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nodemeta.cni.conf import DirEntry, EntryKind, Listing, is_candidate

__all__ = ["ScanLimits", "list_binaries", "scan"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanLimits:
    # Real configurations are a few KiB (a Multus file embedding a delegate, maybe 20); 1 MiB is not a config.
    max_file_bytes: int = 1 << 20
    # Entries kept per listing: a conf dir holds a handful; a runaway writer must not grow our memory.
    max_entries: int = 1024
    # Subdirectories whose `.conf` files are read (libcni 1.3 appends them to the network of the same name).
    max_subdirs: int = 16
    max_subdir_files: int = 64


def _kind(entry: os.DirEntry[str]) -> EntryKind:
    if entry.is_symlink():
        return EntryKind.SYMLINK
    if entry.is_dir(follow_symlinks=False):
        return EntryKind.DIRECTORY
    if entry.is_file(follow_symlinks=False):
        return EntryKind.FILE
    return EntryKind.OTHER


def _why(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _read(path: str, name: str, kind: EntryKind, limits: ScanLimits) -> DirEntry:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            return DirEntry(name, kind, None, f"{what}", st.st_ino, stat.S_IMODE(st.st_mode))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            chunks: list[bytes] = []
            size = 0
            while size <= limits.max_file_bytes:
                chunk = os.read(fd, min(1 << 16, limits.max_file_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except OSError as err:
        return DirEntry(name, kind, None, _why(err))
    if size > limits.max_file_bytes:
        return DirEntry(
            name, kind, None, f"larger than {limits.max_file_bytes} bytes", st.st_ino, stat.S_IMODE(st.st_mode)
        )
    return DirEntry(name, kind, b"".join(chunks), "", st.st_ino, stat.S_IMODE(st.st_mode))


def _children(path: str, limits: ScanLimits) -> tuple[DirEntry, ...]:
    out: list[DirEntry] = []
    try:
        with os.scandir(path) as it:
            for entry in it:
                kind = _kind(entry)
                if kind is EntryKind.DIRECTORY or not entry.name.endswith(".conf"):
                    continue
                out.append(_read(entry.path, entry.name, kind, limits))
                if len(out) >= limits.max_subdir_files:
                    break
    except OSError:
        return ()
    return tuple(out)


def scan(conf_dir: str | Path, limits: ScanLimits | None = None) -> Listing:
    """The directory as the runtime would list it, with the content of every candidate file. Never raises OSError."""
    limits = limits or ScanLimits()
    entries: list[DirEntry] = []
    subdirs = 0
    try:
        with os.scandir(conf_dir) as it:
            for entry in it:
                if len(entries) >= limits.max_entries:
                    break
                try:
                    kind = _kind(entry)
                except OSError:
                    kind = EntryKind.OTHER
                bare = DirEntry(entry.name, kind)
                if is_candidate(bare):
                    entries.append(_read(entry.path, entry.name, kind, limits))
                elif kind is EntryKind.DIRECTORY and subdirs < limits.max_subdirs:
                    subdirs += 1
                    entries.append(DirEntry(entry.name, kind, children=_children(entry.path, limits)))
                else:
                    entries.append(bare)
    except FileNotFoundError:
        return Listing((), exists=False)
    except OSError as err:
        return Listing(tuple(entries), error=_why(err))
    return Listing(tuple(entries))


def list_binaries(bin_dirs: Iterable[str | Path]) -> frozenset[str]:
    """Names of the executable regular files in the bin dirs (missing dirs contribute nothing)."""
    names: set[str] = set()
    for directory in bin_dirs:
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    try:
                        if entry.is_file() and os.access(entry.path, os.X_OK):
                            names.add(entry.name)
                    except OSError:
                        continue
        except OSError:
            continue
    return frozenset(names)

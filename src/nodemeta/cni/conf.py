"""The node's CNI configuration as the container runtime sees it: pure data in, verdicts out, no I/O.

The CNI specification orders nothing; the runtimes do. Both containerd and CRI-O take the non-directory entries of
the configuration directory (no recursion) whose extension is exactly `.conf`, `.conflist` or `.json`, sort the
names in byte order, and then differ:

- containerd (go-cni) loads the first `max_conf_num` files (default 1): the first is the pod network. Any loaded file
  that does not parse aborts the whole load, so an invalid first file leaves the node unable to network new pods.
- CRI-O (ocicni) uses the first *valid* file: it skips files that do not parse, whose plugin binaries are missing,
  or whose network name repeats an earlier one; `cni_default_network` pins a network by name instead.

Parsing follows libcni: a `.conflist` is a list `{name, cniVersion, plugins: [...]}`, anything else a single plugin
object up-converted to a one-plugin list. A conflist without `plugins` takes the `.conf` plugin objects found in
`<dir>/<network name>/` (libcni 1.3, unless `loadOnlyInlinedPlugins`). Problems are values, never exceptions: each
file carries the reason it is invalid, in words a person can act on.

`evaluate` turns one directory listing into a `ConfigState`: every candidate file with its status, the winning
network and why it won, and whether the required chained plugins (a service mesh's `linkerd-cni`, `istio-cni`) are in
its chain after the primary plugin.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CANDIDATE_EXTENSIONS",
    "PRESETS",
    "ChainCheck",
    "ConfFile",
    "ConfigState",
    "DirEntry",
    "EntryKind",
    "FileStatus",
    "FileVerdict",
    "Listing",
    "Network",
    "Plugin",
    "ProblemKind",
    "RuntimeKind",
    "RuntimeModel",
    "Selection",
    "check_chain",
    "evaluate",
    "extension",
    "is_candidate",
    "parse_file",
    "required_types",
    "select",
    "sort_key",
]

# libcni's ConfFiles compares filepath.Ext with these, case-sensitively.
CANDIDATE_EXTENSIONS = (".conf", ".conflist", ".json")

# Mesh presets: the chained plugin type each mesh's installer appends to the primary's list.
PRESETS: Mapping[str, str] = {"linkerd": "linkerd-cni", "istio": "istio-cni"}

# containerd's CRI plugin adds this network before the configured ones; it is not a file in the directory.
LOOPBACK_NETWORK = "cni-loopback"


class EntryKind(enum.StrEnum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One entry of the configuration directory, as the scanner saw it."""

    name: str
    kind: EntryKind
    # The content of a candidate file (following a symlink); None when it was not or could not be read.
    data: bytes | None = None
    # Why the content could not be read ("" when it was).
    read_error: str = ""
    inode: int = 0
    # Permission bits (Calico writes its file 0600, the meshes 0644: a hint about who wrote it).
    mode: int = 0
    # A subdirectory's `.conf` files, byte-ordered (libcni 1.3 appends them to the network named like the directory).
    children: tuple[DirEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Listing:
    """The configuration directory at one moment."""

    entries: tuple[DirEntry, ...] = ()
    # False when the directory does not exist (libcni then finds no files: not an error, but no network).
    exists: bool = True
    # Why the directory could not be listed ("" when it was).
    error: str = ""


def extension(name: str) -> str:
    """Go's filepath.Ext: the suffix from the last dot of the name, "" without one."""
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


def is_candidate(entry: DirEntry) -> bool:
    """Would the runtime consider this entry? libcni skips directories only, so symlinks and others count."""
    return entry.kind is not EntryKind.DIRECTORY and extension(entry.name) in CANDIDATE_EXTENSIONS


def sort_key(name: str) -> bytes:
    """Go's sort.Strings order: the bytes of the name (undecodable bytes survive as surrogate escapes)."""
    return name.encode("utf-8", "surrogateescape")


# -- parsing --------------------------------------------------------------------------------------------------------


class ProblemKind(enum.StrEnum):
    """Why a file is not a usable network configuration."""

    UNREADABLE = "unreadable"
    INVALID_JSON = "invalid-json"
    NOT_AN_OBJECT = "not-an-object"
    MISSING_TYPE = "missing-type"
    MISSING_NAME = "missing-name"
    NO_PLUGINS = "no-plugins"
    BAD_FIELD = "bad-field"


@dataclass(frozen=True, slots=True)
class Plugin:
    type: str
    # Plugin types reached through a Multus `delegates` list (Multus runs them, in order, as the pod's network).
    delegated: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Network:
    name: str
    cni_version: str
    plugins: tuple[Plugin, ...]
    # True when the file is a single plugin object up-converted to a one-plugin list.
    single: bool = False
    # Names of the `<dir>/<name>/*.conf` files whose plugins were appended.
    subdir_files: tuple[str, ...] = ()

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(p.type for p in self.plugins)

    def all_types(self) -> frozenset[str]:
        """The chain's plugin types, including those Multus runs as delegates."""
        return frozenset(t for p in self.plugins for t in (p.type, *p.delegated))


@dataclass(frozen=True, slots=True)
class ConfFile:
    """One candidate file, parsed."""

    name: str
    kind: EntryKind
    # sha256 of the bytes, "" when unread: equal digests mean equal content.
    digest: str
    inode: int = 0
    mode: int = 0
    network: Network | None = None
    problem: ProblemKind | None = None
    # The problem in words ("" when the file is valid).
    detail: str = ""

    @property
    def valid(self) -> bool:
        return self.network is not None


class _Invalid(Exception):
    """Internal: carries a parse problem to the single place that turns it into a value."""

    def __init__(self, kind: ProblemKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


# JSON objects keep every key/value pair in document order, as Go's decoder sees them.
_Pairs = list[tuple[str, object]]


class _Object(list[tuple[str, object]]):
    """A decoded JSON object, every pair in order (Go map lookups take the last exact key, struct fields the last
    case-insensitive one)."""


def _decode(data: bytes) -> object:
    # Go replaces invalid UTF-8 with U+FFFD rather than failing; a byte-order mark stays a syntax error.
    text = data.decode("utf-8", "replace")
    try:
        return json.loads(text, object_pairs_hook=_Object, parse_constant=_reject_constant)
    except RecursionError:
        raise _Invalid(ProblemKind.INVALID_JSON, "the JSON nests too deeply") from None
    except ValueError as err:  # JSONDecodeError is a ValueError
        raise _Invalid(ProblemKind.INVALID_JSON, f"not valid JSON: {err}") from None


def _clean(text: str) -> str:
    """A JSON string made safe to print and re-encode (lone surrogate escapes replaced, as Go does)."""
    return text.encode("utf-8", "replace").decode("utf-8")


_MISSING = object()


def _is_array(value: object) -> bool:
    """A JSON array (a decoded object is a list of pairs, so a plain isinstance check is not enough)."""
    return isinstance(value, list) and not isinstance(value, _Object)


def _exact(obj: _Object, key: str) -> object:
    value: object = _MISSING
    for k, v in obj:
        if k == key:
            value = v
    return value


def _folded(obj: _Object, key: str) -> object:
    value: object = _MISSING
    for k, v in obj:
        if k.lower() == key:
            value = v
    return value


def _plugin(raw: object, where: str) -> Plugin:
    """A plugin object, checked as libcni decodes it into its PluginConf struct."""
    if raw is None:
        raw = _Object()
    if not isinstance(raw, _Object):
        raise _Invalid(ProblemKind.NOT_AN_OBJECT, f"{where} is not a JSON object")
    for key in ("type", "name", "cniversion"):
        value = _folded(raw, key)
        if value is not _MISSING and value is not None and not isinstance(value, str):
            raise _Invalid(ProblemKind.BAD_FIELD, f"{where}: {key!r} must be a string")
    for key in ("ipam", "dns", "capabilities"):
        value = _folded(raw, key)
        if value is not _MISSING and value is not None and not isinstance(value, _Object):
            raise _Invalid(ProblemKind.BAD_FIELD, f"{where}: {key!r} must be an object")
    plugin_type = _folded(raw, "type")
    if not isinstance(plugin_type, str) or not plugin_type:
        raise _Invalid(ProblemKind.MISSING_TYPE, f"{where} has no 'type' (the plugin binary to run)")
    return Plugin(_clean(plugin_type), _delegated(raw))


def _delegated(raw: _Object) -> tuple[str, ...]:
    """Multus (thin) runs its `delegates`, each a plugin or a conflist: their plugin types, in order."""
    delegates = _exact(raw, "delegates")
    if not isinstance(delegates, list) or not _is_array(delegates):
        return ()
    found: list[str] = []
    for delegate in delegates:
        if not isinstance(delegate, _Object):
            continue
        inner = _exact(delegate, "plugins")
        items = inner if isinstance(inner, list) and _is_array(inner) else [delegate]
        for item in items:
            if isinstance(item, _Object):
                t = _folded(item, "type")
                if isinstance(t, str) and t:
                    found.append(_clean(t))
    return tuple(found)


def _string_field(obj: _Object, key: str) -> str:
    value = _exact(obj, key)
    if value is _MISSING:
        return ""
    if not isinstance(value, str):
        raise _Invalid(ProblemKind.BAD_FIELD, f"{key!r} must be a string")
    return _clean(value)


def _bool_field(obj: _Object, key: str) -> bool:
    value = _exact(obj, key)
    if value is _MISSING:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _Invalid(ProblemKind.BAD_FIELD, f"{key!r} must be true or false")


def _conflist(data: bytes, subdir: Sequence[tuple[str, bytes | None]]) -> Network:
    doc = _decode(data)
    if doc is None:
        doc = _Object()
    if not isinstance(doc, _Object):
        raise _Invalid(ProblemKind.NOT_AN_OBJECT, "a .conflist must be a JSON object")
    name = _exact(doc, "name")
    if name is _MISSING:
        raise _Invalid(ProblemKind.MISSING_NAME, "the network list has no 'name'")
    if not isinstance(name, str):
        raise _Invalid(ProblemKind.BAD_FIELD, "'name' must be a string")
    version = _string_field(doc, "cniVersion")
    versions = _exact(doc, "cniVersions")
    if versions is not _MISSING and not (
        isinstance(versions, list) and _is_array(versions) and all(isinstance(v, str) for v in versions)
    ):
        raise _Invalid(ProblemKind.BAD_FIELD, "'cniVersions' must be a list of strings")
    for flag in ("disableCheck", "disableGC"):
        _bool_field(doc, flag)
    inlined_only = _bool_field(doc, "loadOnlyInlinedPlugins")
    raw_plugins = _exact(doc, "plugins")
    plugins: list[Plugin] = []
    if raw_plugins is _MISSING:
        if inlined_only:
            raise _Invalid(ProblemKind.NO_PLUGINS, "'loadOnlyInlinedPlugins' is true and there is no 'plugins' list")
    elif not isinstance(raw_plugins, list) or not _is_array(raw_plugins):
        raise _Invalid(ProblemKind.BAD_FIELD, "'plugins' must be a list")
    elif not raw_plugins:
        raise _Invalid(ProblemKind.NO_PLUGINS, "the 'plugins' list is empty")
    else:
        plugins = [_plugin(raw, f"plugin {i}") for i, raw in enumerate(raw_plugins)]
    subdir_files: list[str] = []
    if not inlined_only:
        for child_name, child_data in subdir:
            where = f"{_clean(name)}/{child_name}"
            if child_data is None:
                raise _Invalid(ProblemKind.UNREADABLE, f"cannot read {where}")
            plugins.append(_plugin(_decode(child_data), where))
            subdir_files.append(child_name)
    if not plugins:
        raise _Invalid(ProblemKind.NO_PLUGINS, "no 'plugins' list and no plugin files in a subdirectory")
    return Network(_clean(name), version, tuple(plugins), subdir_files=tuple(subdir_files))


def _single(data: bytes) -> Network:
    doc = _decode(data)
    plugin = _plugin(doc, "the file")
    assert isinstance(doc, _Object | None)
    obj = doc if doc is not None else _Object()
    name, version = _folded(obj, "name"), _folded(obj, "cniversion")
    return Network(
        _clean(name) if isinstance(name, str) else "",
        _clean(version) if isinstance(version, str) else "",
        (plugin,),
        single=True,
    )


def parse_file(entry: DirEntry, subdir: Sequence[DirEntry] = ()) -> ConfFile:
    """Parse one candidate entry the way libcni does. Never raises: problems are returned in the ConfFile.

    `subdir` is the content of `<dir>/<network name>/` when such a directory exists (only `.conflist` files use it).
    """
    digest = hashlib.sha256(entry.data).hexdigest() if entry.data is not None else ""
    base = ConfFile(entry.name, entry.kind, digest, entry.inode, entry.mode)
    if entry.data is None:
        reason = entry.read_error or "not read"
        return _with_problem(base, ProblemKind.UNREADABLE, f"cannot read the file: {reason}")
    try:
        if extension(entry.name) == ".conflist":
            children = [
                (c.name, c.data) for c in subdir if c.kind is not EntryKind.DIRECTORY and c.name.endswith(".conf")
            ]
            network = _conflist(entry.data, sorted(children, key=lambda c: sort_key(c[0])))
        else:
            network = _single(entry.data)
    except _Invalid as problem:
        return _with_problem(base, problem.kind, problem.detail)
    return ConfFile(base.name, base.kind, digest, base.inode, base.mode, network=network)


def _with_problem(base: ConfFile, kind: ProblemKind, detail: str) -> ConfFile:
    return ConfFile(base.name, base.kind, base.digest, base.inode, base.mode, problem=kind, detail=detail)


# -- which network the runtime uses ----------------------------------------------------------------------------------


class RuntimeKind(enum.StrEnum):
    CONTAINERD = "containerd"
    CRIO = "crio"


@dataclass(frozen=True, slots=True)
class RuntimeModel:
    """How the node's runtime picks its network (the runtime's own settings, not ours)."""

    kind: RuntimeKind = RuntimeKind.CONTAINERD
    # containerd `max_conf_num`: how many files it loads (0 = all). Its default, 1, loads the first file only.
    max_conf_num: int = 1
    # CRI-O `cni_default_network`: "" means the first valid file.
    default_network: str = ""


class FileStatus(enum.StrEnum):
    WINNER = "winner"  # the pod network
    LOADED = "loaded"  # loaded as an extra network (containerd max_conf_num > 1; CRI-O's other valid networks)
    SHADOWED = "shadowed"  # valid but sorts after the winner, so unused
    INVALID = "invalid"  # does not parse
    SKIPPED = "skipped"  # CRI-O: missing plugin binary or a repeated network name
    FATAL = "fatal"  # containerd: a loaded file that does not parse, failing the whole load


@dataclass(frozen=True, slots=True)
class FileVerdict:
    file: ConfFile
    status: FileStatus
    why: str


@dataclass(frozen=True, slots=True)
class Selection:
    model: RuntimeModel
    winner: ConfFile | None
    # Why the winner won, or why the node has no pod network.
    why: str
    # Every candidate file in the runtime's order.
    verdicts: tuple[FileVerdict, ...]
    # The load itself fails (containerd: an invalid loaded file; either: no usable file): new pods get no network.
    fatal: bool = False


def _missing_binaries(network: Network, binaries: frozenset[str] | None) -> tuple[str, ...]:
    if binaries is None:
        return ()
    # libcni's FindInPath refuses names with a path separator.
    return tuple(dict.fromkeys(t for t in network.types if "/" in t or t not in binaries))


def select(files: Sequence[ConfFile], model: RuntimeModel, binaries: frozenset[str] | None = None) -> Selection:
    """The runtime's choice among the candidate files (already in byte order). `binaries` is the set of plugin
    binary names found in the runtime's bin dirs, None when unknown (CRI-O's binary check is then not modelled)."""
    if model.kind is RuntimeKind.CONTAINERD:
        return _containerd(files, model)
    return _crio(files, model, binaries)


def _containerd(files: Sequence[ConfFile], model: RuntimeModel) -> Selection:
    if not files:
        return Selection(
            model,
            None,
            'no .conf/.conflist/.json file: containerd reports "cni plugin not initialized"',
            (),
            fatal=True,
        )
    limit = model.max_conf_num if model.max_conf_num > 0 else len(files)
    verdicts: list[FileVerdict] = []
    failed: ConfFile | None = None
    for index, f in enumerate(files):
        if failed is not None or index >= limit:
            if f.valid:
                why = "sorts after the loaded file" + ("s" if limit > 1 else "")
                if failed is not None:
                    why = f"never reached: the load stopped at {failed.name}"
                verdicts.append(FileVerdict(f, FileStatus.SHADOWED, why))
            else:
                verdicts.append(FileVerdict(f, FileStatus.INVALID, f.detail))
            continue
        if not f.valid:
            failed = f
            verdicts.append(FileVerdict(f, FileStatus.FATAL, f"{f.detail}; containerd aborts the whole load"))
            continue
        if index == 0:
            verdicts.append(FileVerdict(f, FileStatus.WINNER, "first file in byte order: containerd's pod network"))
        else:
            verdicts.append(FileVerdict(f, FileStatus.LOADED, f"loaded as network {index + 1} (max_conf_num)"))
    if failed is not None:
        return Selection(
            model,
            None,
            f"{failed.name} is invalid ({failed.detail}), so containerd loads no network at all",
            tuple(verdicts),
            fatal=True,
        )
    return Selection(model, files[0], verdicts[0].why, tuple(verdicts))


def _crio(files: Sequence[ConfFile], model: RuntimeModel, binaries: frozenset[str] | None) -> Selection:
    verdicts: list[FileVerdict] = []
    valid: list[ConfFile] = []
    seen: dict[str, str] = {}
    for f in files:
        if f.network is None:
            verdicts.append(FileVerdict(f, FileStatus.INVALID, f"{f.detail}; CRI-O skips it"))
            continue
        missing = _missing_binaries(f.network, binaries)
        if missing:
            why = f"plugin binar{'ies' if len(missing) > 1 else 'y'} {', '.join(missing)} not found; CRI-O skips it"
            verdicts.append(FileVerdict(f, FileStatus.SKIPPED, why))
            continue
        if f.network.name in seen:
            why = f"network name {f.network.name!r} already defined by {seen[f.network.name]}; CRI-O skips it"
            verdicts.append(FileVerdict(f, FileStatus.SKIPPED, why))
            continue
        seen[f.network.name] = f.name
        valid.append(f)
        verdicts.append(FileVerdict(f, FileStatus.LOADED, "a valid network"))
    winner: ConfFile | None = None
    if model.default_network:
        winner = next((f for f in valid if f.network is not None and f.network.name == model.default_network), None)
        why = f"its network is named {model.default_network!r} (cni_default_network)"
        if winner is None:
            why = f"no valid file defines the network {model.default_network!r} named by cni_default_network"
    else:
        winner = valid[0] if valid else None
        why = "first valid file in byte order: CRI-O's default network"
        if winner is None:
            why = "no valid .conf/.conflist/.json file: CRI-O has no pod network"
            if not files:
                why = "no .conf/.conflist/.json file: CRI-O has no pod network"
    out: list[FileVerdict] = []
    passed = False
    for v in verdicts:
        if winner is not None and v.file is winner:
            out.append(FileVerdict(v.file, FileStatus.WINNER, why))
            passed = True
        elif v.status is FileStatus.LOADED and winner is not None and passed:
            out.append(FileVerdict(v.file, FileStatus.SHADOWED, f"valid, but sorts after {winner.name}"))
        else:
            out.append(v)
    return Selection(model, winner, why, tuple(out), fatal=winner is None)


# -- the required chained plugins ----------------------------------------------------------------------------------


def required_types(presets: Iterable[str] = (), extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The plugin types that must be in the chain: the presets' types, then the extra ones, without repeats.
    Raises KeyError naming an unknown preset."""
    types = [PRESETS[p] for p in presets]
    types.extend(t for t in extra if t)
    return tuple(dict.fromkeys(types))


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """The winning chain against the required plugins."""

    required: tuple[str, ...] = ()
    # The winning chain's plugin types, in order ("" entries never occur).
    chain: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    # Present, but not after the primary (first) plugin: such a chain cannot give the pod its interface.
    misplaced: tuple[str, ...] = ()
    # Plugin types of the chain with no binary in the bin dirs (empty when the bin dirs are unknown).
    missing_binaries: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing or self.misplaced)


def check_chain(network: Network | None, required: Sequence[str], binaries: frozenset[str] | None) -> ChainCheck:
    if network is None:
        return ChainCheck(tuple(required), (), tuple(required))
    types = network.types
    delegated = {t for p in network.plugins for t in p.delegated}
    missing = tuple(t for t in required if t not in types and t not in delegated)
    misplaced = tuple(t for t in required if t in types and t not in delegated and types.index(t) == 0)
    return ChainCheck(tuple(required), types, missing, misplaced, _missing_binaries(network, binaries))


# -- one evaluated state --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigState:
    """The directory at one moment, as the runtime would use it. Holds no file content (only digests), so a bounded
    history of states stays small."""

    conf_dir: str
    exists: bool
    # Why the directory could not be listed ("" when it could).
    error: str
    files: tuple[ConfFile, ...]
    # Names of the other entries (not candidates): backups such as `*.cilium_bak`, subdirectories, other files.
    others: tuple[str, ...]
    selection: Selection
    chain: ChainCheck
    # When the directory was read (the caller's clock, seconds): the flap window is measured with it.
    observed_at: float = 0.0
    # How many states the watcher published before this one (0 for a one-shot check).
    sequence: int = 0
    binaries: frozenset[str] | None = field(default=None, compare=False)

    @property
    def winner(self) -> ConfFile | None:
        return self.selection.winner

    def fingerprint(self) -> tuple[tuple[str, str, int], ...]:
        """What identifies the directory's content: the candidate names, digests and inodes."""
        return tuple((f.name, f.digest, f.inode) for f in self.files)

    def file(self, name: str) -> ConfFile | None:
        return next((f for f in self.files if f.name == name), None)


def evaluate(
    listing: Listing,
    *,
    conf_dir: str,
    model: RuntimeModel,
    required: Sequence[str] = (),
    binaries: frozenset[str] | None = None,
    observed_at: float = 0.0,
) -> ConfigState:
    """Everything the runtime would conclude from this listing."""
    dirs = {e.name: e for e in listing.entries if e.kind is EntryKind.DIRECTORY}
    candidates = sorted((e for e in listing.entries if is_candidate(e)), key=lambda e: sort_key(e.name))
    files: list[ConfFile] = []
    for entry in candidates:
        parsed = parse_file(entry)
        # A conflist's plugins can continue in `<dir>/<network name>/`: re-parse with that directory's files.
        if extension(entry.name) == ".conflist" and parsed.network is not None and parsed.network.name in dirs:
            parsed = parse_file(entry, dirs[parsed.network.name].children)
        elif parsed.problem is ProblemKind.NO_PLUGINS and dirs:
            name = _network_name(entry)
            if name in dirs:
                parsed = parse_file(entry, dirs[name].children)
        files.append(parsed)
    others = tuple(sorted((e.name for e in listing.entries if not is_candidate(e)), key=sort_key))
    selection = select(files, model, binaries)
    network = selection.winner.network if selection.winner is not None else None
    return ConfigState(
        conf_dir=conf_dir,
        exists=listing.exists,
        error=listing.error,
        files=tuple(files),
        others=others,
        selection=selection,
        chain=check_chain(network, required, binaries),
        observed_at=observed_at,
        binaries=binaries,
    )


def _network_name(entry: DirEntry) -> str:
    """The `name` of a conflist that failed only for want of plugins (to find its plugin subdirectory)."""
    try:
        doc = _decode(entry.data or b"")
    except _Invalid:
        return ""
    if isinstance(doc, _Object):
        name = _exact(doc, "name")
        if isinstance(name, str):
            return name
    return ""

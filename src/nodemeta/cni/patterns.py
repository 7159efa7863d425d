"""Known ways a node's CNI configuration goes wrong, recognised from its states. Pure, no I/O.

Level-triggered: the findings are a function of the current `ConfigState` plus a short, bounded history of earlier
states (and optionally what the runtime says it loaded), never of a sequence of inotify events. A watcher that
misses, merges or reorders events still reaches the same findings on its next rescan.

Every finding has a stable `Code` (also used as the Kubernetes Event reason and a metrics label), a severity, the
file it is about and a message a person can act on. `problem_class` maps findings to the `nodemeta cni check` exit
codes.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nodemeta.cni.conf import ConfFile, ConfigState, FileStatus, RuntimeKind, extension, sort_key
from nodemeta.cni.loaded import LoadedView

__all__ = [
    "CLASS_OF",
    "Code",
    "Finding",
    "History",
    "PatternSettings",
    "ProblemClass",
    "Severity",
    "find",
    "probable_writers",
    "problem_class",
]


class Severity(enum.StrEnum):
    CRITICAL = "critical"  # new pods get no network, or start without the required plugin
    WARNING = "warning"  # nothing broken yet, but one step from it
    INFO = "info"  # worth knowing


class Code(enum.StrEnum):
    NO_CONFIG = "CNINoConfig"
    DIRECTORY_UNREADABLE = "CNIDirectoryUnreadable"
    INVALID_FIRST_FILE = "CNIInvalidFirstFile"
    NO_VALID_NETWORK = "CNINoValidNetwork"
    PLUGIN_BINARY_MISSING = "CNIPluginBinaryMissing"
    RUNTIME_LOAD_FAILED = "CNIRuntimeLoadFailed"
    PLUGIN_MISSING = "CNIPluginMissing"
    PLUGIN_ORDER = "CNIPluginOrder"
    NEW_WINNER = "CNINewWinner"
    JSON_SHADOW = "CNIJsonShadow"
    REWRITE_DROPPED_PLUGIN = "CNIRewriteDroppedPlugin"
    RECREATED_WITHOUT_PLUGIN = "CNIRecreatedWithoutPlugin"
    FLAPPING = "CNIFlapping"
    RUNTIME_STALE = "CNIRuntimeStale"
    RUNTIME_VIEW_INVALID = "CNIRuntimeViewInvalid"
    INVALID_FILE = "CNIInvalidFile"
    FILE_SKIPPED = "CNIFileSkipped"


class ProblemClass(enum.IntEnum):
    """`nodemeta cni check` exit codes, worst last (1 and 2 stay Python's and argparse's)."""

    HEALTHY = 0
    WARNINGS = 3  # only warnings
    RUNTIME = 4  # the runtime's loaded configuration differs from the disk
    CHAIN = 5  # a required plugin is missing or misplaced: pods start without traffic capture
    NO_NETWORK = 6  # the node cannot network new pods


# The class of each code when its finding is critical (a warning is always WARNINGS, info never counts).
CLASS_OF: dict[Code, ProblemClass] = {
    Code.NO_CONFIG: ProblemClass.NO_NETWORK,
    Code.DIRECTORY_UNREADABLE: ProblemClass.NO_NETWORK,
    Code.INVALID_FIRST_FILE: ProblemClass.NO_NETWORK,
    Code.NO_VALID_NETWORK: ProblemClass.NO_NETWORK,
    Code.PLUGIN_BINARY_MISSING: ProblemClass.NO_NETWORK,
    Code.RUNTIME_LOAD_FAILED: ProblemClass.NO_NETWORK,
    Code.PLUGIN_MISSING: ProblemClass.CHAIN,
    Code.PLUGIN_ORDER: ProblemClass.CHAIN,
    Code.NEW_WINNER: ProblemClass.CHAIN,
    Code.JSON_SHADOW: ProblemClass.CHAIN,
    Code.REWRITE_DROPPED_PLUGIN: ProblemClass.CHAIN,
    Code.RECREATED_WITHOUT_PLUGIN: ProblemClass.CHAIN,
    Code.FLAPPING: ProblemClass.CHAIN,
    Code.RUNTIME_STALE: ProblemClass.RUNTIME,
    Code.RUNTIME_VIEW_INVALID: ProblemClass.RUNTIME,
    Code.INVALID_FILE: ProblemClass.WARNINGS,
    Code.FILE_SKIPPED: ProblemClass.WARNINGS,
}


@dataclass(frozen=True, slots=True)
class Finding:
    code: Code
    severity: Severity
    # The file the finding is about, "" for the directory or the runtime as a whole.
    file: str
    message: str


def problem_class(finding: Finding) -> ProblemClass:
    if finding.severity is Severity.CRITICAL:
        return CLASS_OF[finding.code]
    if finding.severity is Severity.WARNING:
        return ProblemClass.WARNINGS
    return ProblemClass.HEALTHY


@dataclass(frozen=True, slots=True, kw_only=True)
class PatternSettings:
    # Content changes of the winning file within the window that make a fight: 4 is two round trips
    # (A -> B -> A -> B -> A); one restart that rewrites the file once or twice is not a fight.
    flap_changes: int = 4
    # Installers fighting over a file react within seconds; rewrites an hour apart are separate restarts.
    flap_window: float = 600.0
    # States kept (only distinct ones are recorded): enough for a fight at the threshold and the states before it,
    # small enough to hold (no file content is kept, only names, digests and plugin types).
    history: int = 64

    def __post_init__(self) -> None:
        if self.flap_changes < 2 or self.flap_window <= 0 or self.history < 2:
            raise ValueError("flap_changes >= 2, flap_window > 0 and history >= 2 are required")


class History:
    """The bounded list of distinct states the patterns look back on (oldest first, the current one last)."""

    def __init__(self, settings: PatternSettings | None = None) -> None:
        self.settings = settings or PatternSettings()
        self._states: deque[ConfigState] = deque(maxlen=self.settings.history)

    def add(self, state: ConfigState) -> bool:
        """Record a state; False (and nothing kept) when it equals the last one."""
        if self._states and _same(self._states[-1], state):
            return False
        self._states.append(state)
        return True

    @property
    def states(self) -> tuple[ConfigState, ...]:
        return tuple(self._states)

    def __len__(self) -> int:
        return len(self._states)


def _same(a: ConfigState, b: ConfigState) -> bool:
    return (
        a.fingerprint() == b.fingerprint()
        and a.others == b.others
        and (a.exists, a.error) == (b.exists, b.error)
        and a.selection == b.selection
        and a.chain == b.chain
    )


# Who usually writes a file with these plugin types or names: to name the probable writer in a fight.
_TYPE_WRITERS = {
    "calico": "Calico (install-cni rewrites its file in place on every calico-node start)",
    "aws-cni": "AWS VPC CNI (aws-node renames its file in on start)",
    "cilium-cni": "Cilium (the agent rewrites 05-cilium.conflist)",
    "flannel": "flannel",
    "multus": "Multus",
    "multus-shim": "Multus (thick plugin)",
    "linkerd-cni": "the linkerd-cni installer",
    "istio-cni": "the istio-cni node agent",
}
_CILIUM_BACKUP = ".cilium_bak"


def probable_writers(types: Iterable[str], names: Iterable[str] = ()) -> tuple[str, ...]:
    """Writers suggested by plugin types and directory entry names, most specific first."""
    out: list[str] = []
    if any(n.endswith(_CILIUM_BACKUP) for n in names):
        out.append("Cilium in exclusive mode (cni.exclusive=true renames every other configuration to *.cilium_bak)")
    for t in sorted(set(types)):
        if t in _TYPE_WRITERS:
            out.append(_TYPE_WRITERS[t])
    return tuple(dict.fromkeys(out))


def _name_hint(name: str) -> str:
    if name.startswith("00-multus"):
        return " (Multus writes 00-multus.conf to sort first)"
    if "cilium" in name:
        return " (the Cilium agent's file)"
    return ""


def _plural(items: Sequence[str]) -> str:
    return ", ".join(items)


def find(
    history: Sequence[ConfigState],
    loaded: LoadedView | None = None,
    settings: PatternSettings | None = None,
) -> tuple[Finding, ...]:
    """The findings for the last state of `history` (oldest first), given the states before it."""
    if not history:
        return ()
    settings = settings or PatternSettings()
    current = history[-1]
    past = history[:-1]
    out: list[Finding] = []
    out.extend(_directory(current))
    out.extend(_files(current))
    if current.winner is not None:
        out.extend(_chain(current))
        out.extend(_newcomer(current, past))
        out.extend(_rewrite(current, past))
    out.extend(_flapping(current, history, settings))
    if loaded is not None:
        out.extend(_runtime(current, loaded))
    return tuple(out)


def _directory(state: ConfigState) -> list[Finding]:
    sel = state.selection
    if state.error:
        return [
            Finding(Code.DIRECTORY_UNREADABLE, Severity.CRITICAL, "", f"cannot list {state.conf_dir}: {state.error}")
        ]
    if not state.files:
        where = "does not exist" if not state.exists else "has no .conf, .conflist or .json file"
        return [
            Finding(
                Code.NO_CONFIG,
                Severity.CRITICAL,
                "",
                f"{state.conf_dir} {where}: the runtime has no pod network and new pods cannot start",
            )
        ]
    if not sel.fatal:
        return []
    if sel.model.kind is RuntimeKind.CONTAINERD:
        bad = next(v for v in sel.verdicts if v.status is FileStatus.FATAL)
        first = "the first file" if bad.file is state.files[0] else "a loaded file (max_conf_num)"
        return [
            Finding(
                Code.INVALID_FIRST_FILE,
                Severity.CRITICAL,
                bad.file.name,
                f"{bad.file.name} is {first} and is invalid ({bad.file.detail}): containerd loads no "
                "network, so no new pod on this node gets networking",
            )
        ]
    return [Finding(Code.NO_VALID_NETWORK, Severity.CRITICAL, "", f"{sel.why}: new pods cannot start")]


def _files(state: ConfigState) -> list[Finding]:
    out = []
    for v in state.selection.verdicts:
        if v.status is FileStatus.INVALID:
            out.append(
                Finding(
                    Code.INVALID_FILE,
                    Severity.WARNING,
                    v.file.name,
                    f"{v.file.name} is invalid ({v.file.detail}); it would break the node's networking if "
                    "it ever sorted first on containerd",
                )
            )
        elif v.status is FileStatus.SKIPPED:
            out.append(Finding(Code.FILE_SKIPPED, Severity.WARNING, v.file.name, f"{v.file.name}: {v.why}"))
    return out


def _chain(state: ConfigState) -> list[Finding]:
    winner = state.winner
    assert winner is not None and winner.network is not None
    chain = state.chain
    out: list[Finding] = []
    if chain.missing_binaries and state.selection.model.kind is RuntimeKind.CONTAINERD:
        out.append(
            Finding(
                Code.PLUGIN_BINARY_MISSING,
                Severity.CRITICAL,
                winner.name,
                f"{winner.name} runs {_plural(chain.missing_binaries)} but no such binary is in the bin "
                "dirs: every pod network setup on this node fails",
            )
        )
    if chain.missing:
        holders = [
            f.name
            for f in state.files
            if f is not winner and f.network is not None and all(t in f.network.all_types() for t in chain.missing)
        ]
        hint = f"; {_plural(holders)} has it but sorts after {winner.name}" if holders else ""
        out.append(
            Finding(
                Code.PLUGIN_MISSING,
                Severity.CRITICAL,
                winner.name,
                f"{_plural(chain.missing)} is not in the chain of {winner.name} "
                f"({' -> '.join(chain.chain)}), the runtime's pod network: new pods start without "
                f"traffic capture{hint}",
            )
        )
    if chain.misplaced:
        out.append(
            Finding(
                Code.PLUGIN_ORDER,
                Severity.CRITICAL,
                winner.name,
                f"{_plural(chain.misplaced)} is the first plugin of {winner.name} "
                f"({' -> '.join(chain.chain)}): a chained plugin must come after the primary plugin "
                "that gives the pod its interface",
            )
        )
    if extension(winner.name) == ".json":
        severity = Severity.CRITICAL if not chain.ok else Severity.WARNING
        out.append(
            Finding(
                Code.JSON_SHADOW,
                severity,
                winner.name,
                f"{winner.name} wins: the runtimes read .json files but the mesh installers only patch "
                ".conf and .conflist, so it will never get the chained plugin",
            )
        )
    return out


def _newcomer(current: ConfigState, past: Sequence[ConfigState]) -> list[Finding]:
    winner = current.winner
    assert winner is not None
    before = next((s for s in reversed(past) if s.winner is not None and s.winner.name != winner.name), None)
    if before is None or before.winner is None:
        return []
    previous = before.winner.name
    if before.file(winner.name) is not None or sort_key(winner.name) >= sort_key(previous):
        return []
    bad = not current.chain.ok
    lacking = f" without {_plural(current.chain.missing or current.chain.misplaced)}" if bad else ""
    return [
        Finding(
            Code.NEW_WINNER,
            Severity.CRITICAL if bad else Severity.INFO,
            winner.name,
            f"{winner.name} appeared{_name_hint(winner.name)} and sorts before {previous}, so it replaced "
            f"{previous} as the pod network{lacking}",
        )
    ]


def _rewrite(current: ConfigState, past: Sequence[ConfigState]) -> list[Finding]:
    winner = current.winner
    assert winner is not None and winner.network is not None
    absent = False
    previous: ConfFile | None = None
    for state in reversed(past):
        f = state.file(winner.name)
        if f is None:
            absent = True
        elif f.digest != winner.digest:
            previous = f
            break
    if previous is None or previous.network is None:
        return []
    now = winner.network.all_types()
    dropped = [t for t in current.chain.required if t in previous.network.all_types() and t not in now]
    if not dropped:
        return []
    if absent:
        return [
            Finding(
                Code.RECREATED_WITHOUT_PLUGIN,
                Severity.CRITICAL,
                winner.name,
                f"{winner.name} was deleted and created again without {_plural(dropped)}: an installer that "
                "reacts to events rather than re-reading the directory misses this re-patch",
            )
        ]
    if previous.inode and previous.inode == winner.inode:
        # A file deleted and created at once can get the freed inode number back, so this is the likely story only.
        how = "rewritten in place (same inode: truncated and written, as Calico's install-cni does)"
    else:
        how = "replaced by a new file (new inode: renamed in, as AWS VPC CNI does)"
    writers = probable_writers(winner.network.types)
    by = f"; probable writer: {writers[0]}" if writers else ""
    return [
        Finding(
            Code.REWRITE_DROPPED_PLUGIN,
            Severity.CRITICAL,
            winner.name,
            f"{winner.name} was {how} and lost {_plural(dropped)}{by}",
        )
    ]


def _flapping(current: ConfigState, history: Sequence[ConfigState], settings: PatternSettings) -> list[Finding]:
    since = current.observed_at - settings.flap_window
    window = [s for s in history if s.observed_at >= since]
    versions: list[tuple[str, str] | None] = []
    for s in window:
        v = (s.winner.name, s.winner.digest) if s.winner is not None else None
        if not versions or versions[-1] != v:
            versions.append(v)
    changes = len(versions) - 1
    if changes < settings.flap_changes or len(set(versions)) == len(versions):
        return []
    type_sets = [s.winner.network.all_types() for s in window if s.winner is not None and s.winner.network is not None]
    union = frozenset().union(*type_sets) if type_sets else frozenset()
    common = frozenset.intersection(*type_sets) if type_sets else frozenset()
    contested = sorted(union - common)
    names = {n for s in window for n in s.others}
    writers = probable_writers(contested or union, names)
    flips = [t for t in current.chain.required if t in contested]
    severity = Severity.CRITICAL if flips else Severity.WARNING
    files = sorted({v[0] for v in versions if v is not None}, key=sort_key)
    what = f"{', '.join(files)} changed {changes} times"
    detail = f"; {_plural(flips)} keeps appearing and disappearing" if flips else ""
    by = f"; probable writers: {'; '.join(writers)}" if writers else ""
    return [
        Finding(
            Code.FLAPPING,
            severity,
            current.winner.name if current.winner else "",
            f"the pod network is flapping: {what} within {settings.flap_window:g}s, alternating between "
            f"versions{detail}{by}",
        )
    ]


def _runtime(current: ConfigState, loaded: LoadedView) -> list[Finding]:
    if loaded.error:
        return [
            Finding(
                Code.RUNTIME_VIEW_INVALID,
                Severity.WARNING,
                "",
                f"cannot compare with the runtime's loaded configuration: {loaded.error}",
            )
        ]
    if loaded.load_failed:
        return [
            Finding(
                Code.RUNTIME_LOAD_FAILED,
                Severity.CRITICAL,
                "",
                f"the runtime's last CNI configuration load failed: {loaded.last_load_status}",
            )
        ]
    winner = current.winner
    network = winner.network if winner is not None else None
    first = loaded.networks[0] if loaded.networks else None
    if network is None and first is None:
        return []
    if network is not None and first is not None and (network.name, network.types) == (first.name, first.types):
        return []
    disk = f"{winner.name} ({network.name}: {' -> '.join(network.types)})" if winner and network else "no network"
    runtime = f"{first.name}: {' -> '.join(first.types)}" if first else "no network"
    return [
        Finding(
            Code.RUNTIME_STALE,
            Severity.CRITICAL,
            winner.name if winner else "",
            f"the runtime did not load what is on disk: disk says {disk}, the runtime uses {runtime} "
            "(containerd ignores files created or moved into the directory until the next write)",
        )
    ]

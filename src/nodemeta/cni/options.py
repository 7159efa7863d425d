"""The CNI chain guard's command-line options and the settings they describe, shared by `nodemeta agent run`
(every option prefixed `--cni-`) and `nodemeta cni guard` (the same options without the prefix). Pure: argparse in,
a frozen `GuardConfig` out, `OptionError` naming the flag at fault.

Paths given as options are taken as this process sees them; only the defaults are placed under the host root
(`/etc/cni/net.d`, `/var/lib/cni/results`, `/proc`), for a guard in a container with the host's / mounted.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any

from nodemeta.cni.actions import ActionSettings
from nodemeta.cni.audit import AuditSettings
from nodemeta.cni.capture import PROFILES
from nodemeta.cni.conf import PRESETS, RuntimeKind, RuntimeModel, required_types
from nodemeta.cni.guard import GuardSettings
from nodemeta.cni.policy import PolicySettings, Selector
from nodemeta.cni.results import ResultCacheSettings
from nodemeta.cni.watch import WatchSettings

__all__ = ["DEFAULT_CONF_DIR", "GuardConfig", "OptionError", "add_guard_options", "config_from", "parse_selector"]

DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_RESULTS_DIR = ResultCacheSettings().directory


class OptionError(ValueError):
    """An option is unusable; the message names it and says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardConfig:
    """Everything the guard's options configure."""

    conf_dir: str
    model: RuntimeModel = field(default_factory=RuntimeModel)
    required: tuple[str, ...] = ()
    audit: AuditSettings = field(default_factory=AuditSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    guard: GuardSettings = field(default_factory=GuardSettings)
    actions: ActionSettings = field(default_factory=ActionSettings)


def parse_selector(text: str, *, annotations: bool = False) -> Selector:
    """`PROFILE:KEY[=VALUE][,KEY[=VALUE]...]` -> a Selector (a KEY without a value: present with any value).
    Raises ValueError with the reason."""
    profile, sep, rest = text.partition(":")
    if not sep or profile not in PROFILES:
        raise ValueError(f"{text!r}: expected PROFILE:KEY[=VALUE],... with PROFILE one of {', '.join(PROFILES)}")
    wanted: dict[str, str | None] = {}
    for item in rest.split(","):
        key, eq, value = item.strip().partition("=")
        if not key.strip():
            raise ValueError(f"{text!r}: an empty key")
        wanted[key.strip()] = value.strip() if eq else None
    if annotations:
        return Selector(profile=profile, annotations=wanted)
    return Selector(profile=profile, labels=wanted)


def _flag(prefix: str, name: str) -> str:
    return f"--{prefix}{name}"


def _dest(prefix: str, name: str) -> str:
    return (prefix + name).replace("-", "_")


def add_guard_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, prefix: str = "") -> None:
    """The guard's options on `parser`, each named `--<prefix><name>` (prefix "cni-" in the agent)."""

    def option(name: str, **kwargs: Any) -> None:
        parser.add_argument(_flag(prefix, name), dest=_dest(prefix, name), **kwargs)

    option("conf-dir", default="", metavar="DIR",
           help=f"the CNI configuration directory (default {DEFAULT_CONF_DIR} under --host-root)")  # fmt: skip
    option("runtime", choices=[k.value for k in RuntimeKind], default=RuntimeKind.CONTAINERD.value,
           help="how the runtime picks its file: containerd (first file) or crio (first valid file); "
           "default containerd")  # fmt: skip
    option("preset", action="append", default=[], choices=sorted(PRESETS),
           help="require a mesh's chained plugin (linkerd: linkerd-cni, istio: istio-cni); repeatable")  # fmt: skip
    option("require", action="append", default=[], metavar="TYPE",
           help="require this plugin type in the chain (repeatable)")  # fmt: skip
    for name, where in (("selector", "labels"), ("annotation-selector", "annotations")):
        option(name, action="append", default=[], metavar="PROFILE:KEY[=VALUE][,KEY[=VALUE]...]",
               help=f"pods whose {where} match must be captured with PROFILE ({', '.join(PROFILES)}), besides the "
               "Linkerd and Istio rules; repeatable")  # fmt: skip
    option("results-dir", default="", metavar="DIR",
           help=f"libcni's result cache (default {DEFAULT_RESULTS_DIR} under --host-root)")  # fmt: skip
    option("audit-interval", type=float, default=GuardSettings().audit_interval, metavar="SECONDS",
           help="audit the pods at least this often (default %(default)g)")  # fmt: skip
    option("rescan-interval", type=float, default=WatchSettings().rescan_interval, metavar="SECONDS",
           help="re-read the conf dir and the runtime's loaded view at least this often, besides inotify "
           "(default %(default)g)")  # fmt: skip
    defaults = ActionSettings()
    taint = f"{defaults.taint_key}:{defaults.taint_effect}"
    for name, default, what in (
        ("taint", defaults.taint, f"taint the node {taint} while the chain is broken"),
        ("events", defaults.events, "record Kubernetes Events on the Node and on uncaptured pods"),
        ("label", defaults.label, f"label uncaptured pods {defaults.label_key}=true"),
        ("delete-pods", defaults.delete, "delete uncaptured pods that a controller recreates, with uid and "
         "resourceVersion preconditions, once the chain is healthy"),
    ):  # fmt: skip
        option(name, action=argparse.BooleanOptionalAction, default=default,
               help=f"{what} (default {'on' if default else 'off'})")  # fmt: skip
    option("taint-clear-after", type=float, default=defaults.taint_clear_after, metavar="SECONDS",
           help="healthy this long before the taint is removed (default %(default)g)")  # fmt: skip
    option("delete-after", type=float, default=defaults.delete_after, metavar="SECONDS",
           help="uncaptured this long before a pod is deleted (default %(default)g)")  # fmt: skip


def config_from(args: argparse.Namespace, prefix: str = "", *, host_root: str = "") -> GuardConfig:
    """The settings the options describe. Raises OptionError naming the option at fault."""

    def get(name: str) -> object:
        return getattr(args, _dest(prefix, name))

    def positive(name: str, *, zero: bool = False) -> float:
        value = float(get(name))  # type: ignore[arg-type]
        if value < 0 or (value == 0 and not zero) or value != value:
            raise OptionError(f"{_flag(prefix, name)} must be {'0 or more' if zero else 'positive'}: {value:g}")
        return value

    required_flags: list[str] = get("require")  # type: ignore[assignment]
    if any(not t.strip() or "/" in t for t in required_flags):
        raise OptionError(f"{_flag(prefix, 'require')} takes a plugin type: a binary name, not empty, without '/'")
    presets: list[str] = get("preset")  # type: ignore[assignment]
    required = required_types(presets, (t.strip() for t in required_flags))
    selectors: list[Selector] = []
    try:
        selectors += [parse_selector(t) for t in get("selector")]  # type: ignore[attr-defined]
        selectors += [parse_selector(t, annotations=True) for t in get("annotation-selector")]  # type: ignore[attr-defined]
    except ValueError as err:
        raise OptionError(f"{_flag(prefix, 'selector')}: {err}") from None
    conf_dir = str(get("conf-dir")) or _under(host_root, DEFAULT_CONF_DIR)
    results_dir = str(get("results-dir")) or _under(host_root, DEFAULT_RESULTS_DIR)
    rescan = positive("rescan-interval")
    watch = WatchSettings(rescan_interval=rescan, max_delay=min(WatchSettings().max_delay, rescan),
                          debounce=min(WatchSettings().debounce, rescan))  # fmt: skip
    return GuardConfig(
        conf_dir=conf_dir,
        model=RuntimeModel(RuntimeKind(str(get("runtime")))),
        required=required,
        audit=AuditSettings(
            policy=PolicySettings(selectors=tuple(selectors)),
            required_plugins=required,
            results=ResultCacheSettings(directory=results_dir),
            proc=_under(host_root, "/proc"),
        ),
        watch=watch,
        guard=GuardSettings(audit_interval=positive("audit-interval")),
        actions=ActionSettings(
            taint=bool(get("taint")),
            events=bool(get("events")),
            label=bool(get("label")),
            delete=bool(get("delete-pods")),
            taint_clear_after=positive("taint-clear-after"),
            delete_after=positive("delete-after", zero=True),
        ),
    )


def _under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root else path

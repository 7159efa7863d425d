"""`nodemeta cni check`: the node's CNI configuration, checked once, as the runtime would use it (and the entry of
`nodemeta cni guard`, whose work is in `nodemeta.cni.guard_command`).

Works on a directory alone (no runtime, no root): `--conf-dir` is read, the winner is chosen as `--runtime` would,
the required plugins (`--preset`, `--require`) are looked for in its chain, and `--crictl-info` (the output of
`crictl info`) adds the comparison with what containerd actually loaded.

With a container runtime (`--cri-socket`, else the first default socket that answers) the pods are audited too
(`nodemeta.cni.audit`): each pod that must be captured gets a section with its capture state, and the runtime's
CRI `Status` supplies the loaded configuration when `--crictl-info` is not given. `--no-pods` skips that part.

Exit codes (also in docs/cni.md): 0 healthy; 3 warnings only; 4 the runtime's loaded configuration differs from
the disk; 5 a required plugin is missing or misplaced (pods start without traffic capture); 6 the node cannot network
new pods; 7 a pod that must be captured could not be audited (or `--cri-socket` did not answer); 8 a pod's capture
is partial; 9 a pod that must be captured is not; 64 a usage error of `cni check`; 66 an input file given by a flag
cannot be read. 1 is an unexpected error, 2 a usage error of the outer `nodemeta` command.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson

from nodemeta.cni.audit import AuditSettings, PodAuditor
from nodemeta.cni.capture import PROFILES
from nodemeta.cni.conf import PRESETS, RuntimeKind, RuntimeModel, evaluate, required_types
from nodemeta.cni.loaded import LoadedView, from_crictl_info, from_status_info
from nodemeta.cni.options import parse_selector
from nodemeta.cni.patterns import find
from nodemeta.cni.policy import PolicySettings
from nodemeta.cni.report import CheckReport, PodSection, render_text, to_json
from nodemeta.cni.results import ResultCacheSettings
from nodemeta.cni.scan import list_binaries, scan
from nodemeta.cni.verdict import PodClass, pod_sections, summary_lines
from nodemeta.cri.client import CriClient
from nodemeta.cri.discovery import NoRuntimeFound, discover_runtime
from nodemeta.cri.model import CriError

__all__ = [
    "EXIT_NO_INPUT",
    "EXIT_USAGE",
    "PodPart",
    "add_arguments",
    "audit_pods",
    "build_report",
    "parse_selector",
    "run",
]

EXIT_USAGE = 64  # sysexits EX_USAGE
EXIT_NO_INPUT = 66  # sysexits EX_NOINPUT

DEFAULT_CONF_DIR = "/etc/cni/net.d"


class _UsageParser(argparse.ArgumentParser):
    """`cni` subcommands report usage errors with exit 64, so that 2 never means two things."""

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        # A leaf command: unknown arguments are its own usage error, not the outer parser's (which exits 2).
        namespace, extras = super().parse_known_args(*args, **kwargs)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def add_arguments(cni: argparse.ArgumentParser) -> None:
    """The `nodemeta cni` subcommands."""
    commands = cni.add_subparsers(dest="cni_command", required=True, parser_class=_UsageParser)
    check = commands.add_parser(
        "check",
        help="check the node's CNI configuration: the winning file, its chain, what is missing",
        description="Read the CNI configuration directory the way the container runtime does, name the file it "
        "uses and why, and check that the required chained plugins are in that file's chain. Exit codes: 0 healthy, "
        "3 warnings only, 4 runtime out of date, 5 required plugin missing or misplaced, 6 no pod network, "
        "7 a pod could not be audited, 8 a pod partially captured, 9 a pod not captured, "
        "64 usage error, 66 unreadable input.",
    )
    check.add_argument(
        "--conf-dir",
        default=DEFAULT_CONF_DIR,
        metavar="DIR",
        help=f"the CNI configuration directory (default {DEFAULT_CONF_DIR})",
    )
    check.add_argument(
        "--runtime",
        choices=[k.value for k in RuntimeKind],
        default=RuntimeKind.CONTAINERD.value,
        help="how the winner is chosen: containerd (first file) or crio (first valid file)",
    )
    check.add_argument(
        "--max-conf-num",
        type=int,
        default=1,
        metavar="N",
        help="containerd's max_conf_num: files loaded, 0 for all (default 1)",
    )
    check.add_argument(
        "--default-network",
        default="",
        metavar="NAME",
        help="CRI-O's cni_default_network (default: the first valid file)",
    )
    check.add_argument(
        "--preset",
        action="append",
        default=[],
        choices=sorted(PRESETS),
        help="require a service mesh's chained plugin (linkerd: linkerd-cni, istio: istio-cni)",
    )
    check.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="PLUGIN_TYPE",
        help="require this plugin type in the chain (repeatable)",
    )
    check.add_argument(
        "--bin-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a CNI plugin binary directory (repeatable); checks that the chain's binaries exist",
    )
    check.add_argument(
        "--crictl-info",
        default="",
        metavar="FILE",
        help="the output of `crictl info` ('-' for stdin): compare with what containerd loaded",
    )
    pods = check.add_argument_group("pod capture audit")
    pods.add_argument(
        "--cri-socket",
        default="",
        metavar="PATH",
        help="the runtime's CRI socket (default: the first of the usual containerd and CRI-O sockets that answers; "
        "none: the pods are not audited)",
    )
    pods.add_argument("--no-pods", action="store_true", help="check the configuration only")
    pods.add_argument(
        "--results-dir",
        default=ResultCacheSettings().directory,
        metavar="DIR",
        help="libcni's result cache (default %(default)s)",
    )
    pods.add_argument(
        "--proc", default="/proc", metavar="DIR", help="the host's /proc, for the pods' namespaces (default /proc)"
    )
    for flag, where in (("--selector", "labels"), ("--annotation-selector", "annotations")):
        pods.add_argument(
            flag,
            action="append",
            default=[],
            metavar="PROFILE:KEY[=VALUE][,KEY[=VALUE]...]",
            help=f"pods whose {where} match must be captured with PROFILE ({', '.join(PROFILES)}); repeatable",
        )
    pods.add_argument(
        "--probe", action="store_true", help="also prove capture actively in pods whose rules look complete"
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(cni_parser=check)
    from nodemeta.cni import guard_command

    guard = commands.add_parser(
        "guard",
        help="run the CNI chain guard alone: watch the chain and the pods' capture, taint, label, record Events",
        description="The CNI chain guard of `nodemeta agent run --cni-guard`, without the agent: watch the node's "
        "CNI configuration and audit its pods' traffic capture; taint the node while the chain is broken, record "
        "Events, label (and optionally delete) pods whose traffic is not captured. Runs until SIGTERM.",
    )
    guard_command.add_arguments(guard)
    guard.set_defaults(cni_parser=guard)


def build_report(
    conf_dir: str,
    model: RuntimeModel,
    required: tuple[str, ...],
    bin_dirs: list[str],
    loaded: LoadedView | None = None,
    pods: tuple[PodSection, ...] | None = None,
    *,
    pod_notes: tuple[str, ...] = (),
    pod_class: int = 0,
) -> CheckReport:
    """Scan, evaluate and find, once (the pod audit passes its sections in `pods`)."""
    binaries = list_binaries(bin_dirs) if bin_dirs else None
    state = evaluate(scan(conf_dir), conf_dir=conf_dir, model=model, required=required, binaries=binaries)
    return CheckReport(state, find([state], loaded), loaded, pods, pod_notes, pod_class)


@dataclass(frozen=True, slots=True)
class PodPart:
    """The pod audit's contribution to the report."""

    sections: tuple[PodSection, ...] | None
    notes: tuple[str, ...]
    loaded: LoadedView | None = None
    exit_class: int = 0


async def audit_pods(socket: str, settings: AuditSettings, *, want_loaded: bool) -> PodPart:
    """Find the runtime (`socket`, else discovery), read its loaded CNI view and audit its pods."""
    if socket:
        path = socket
    else:
        try:
            path = (await discover_runtime()).path
        except NoRuntimeFound as err:
            return PodPart(None, (f"no container runtime: {err}",))
    async with CriClient(path) as runtime:
        try:
            loaded = from_status_info((await runtime.status()).info) if want_loaded else None
            node = await PodAuditor(runtime, settings=settings).audit_node()
        except CriError as err:
            exit_class = int(PodClass.UNREADABLE) if socket else 0
            return PodPart(None, (f"the runtime at {path} did not answer: {err}",), exit_class=exit_class)
    return PodPart(pod_sections(node), (f"runtime {path}", *summary_lines(node)), loaded)


def _audit_settings(args: argparse.Namespace, required: Sequence[str]) -> AuditSettings:
    selectors = tuple(parse_selector(t) for t in args.selector) + tuple(
        parse_selector(t, annotations=True) for t in args.annotation_selector
    )
    return AuditSettings(
        policy=PolicySettings(selectors=selectors),
        required_plugins=tuple(required),
        results=ResultCacheSettings(directory=args.results_dir),
        proc=args.proc,
        probe=args.probe,
    )


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def run(args: argparse.Namespace) -> int:
    """Run the `nodemeta cni` subcommand the arguments name; returns the exit code."""
    parser: argparse.ArgumentParser = args.cni_parser
    if args.cni_command == "guard":
        from nodemeta.cni import guard_command

        return guard_command.run(args)
    if args.max_conf_num < 0:
        parser.error("--max-conf-num must be 0 or more")
    if any(not t.strip() or "/" in t for t in args.require):
        parser.error("--require takes a plugin type: a binary name, not empty and without '/'")
    model = RuntimeModel(RuntimeKind(args.runtime), args.max_conf_num, args.default_network)
    required = required_types(args.preset, (t.strip() for t in args.require))
    try:
        settings = _audit_settings(args, required)
    except ValueError as err:
        parser.error(str(err))
    loaded = None
    if args.crictl_info:
        try:
            loaded = from_crictl_info(_read_input(args.crictl_info))
        except OSError as err:
            print(
                f"nodemeta cni check: cannot read --crictl-info {args.crictl_info}: {err.strerror or err}",
                file=sys.stderr,
            )
            return EXIT_NO_INPUT
    part = PodPart(None, ("--no-pods",))
    if not args.no_pods:
        part = asyncio.run(audit_pods(args.cri_socket, settings, want_loaded=loaded is None))
    report = build_report(
        args.conf_dir,
        model,
        required,
        args.bin_dir,
        loaded or part.loaded,
        part.sections,
        pod_notes=part.notes,
        pod_class=part.exit_class,
    )
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(to_json(report), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        sys.stdout.write(render_text(report))
    sys.stdout.flush()
    return report.exit_code

"""`nodemeta cni check`: the node's CNI configuration, checked once, as the runtime would use it.

Works on a directory alone (no runtime, no root): `--conf-dir` is read, the winner is chosen as `--runtime` would,
the required plugins (`--preset`, `--require`) are looked for in its chain, and `--crictl-info` (the output of
`crictl info`) adds the comparison with what containerd actually loaded.

Exit codes (also in docs/cni.md): 0 healthy; 3 warnings only; 4 the runtime's loaded configuration differs from
the disk; 5 a required plugin is missing or misplaced (pods start without traffic capture); 6 the node cannot network
new pods; 64 a usage error of `cni check`; 66 an input file given by a flag cannot be read. 1 is an unexpected
error, 2 a usage error of the outer `nodemeta` command.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

import orjson

from nodemeta.cni.conf import PRESETS, RuntimeKind, RuntimeModel, evaluate, required_types
from nodemeta.cni.loaded import LoadedView, from_crictl_info
from nodemeta.cni.patterns import find
from nodemeta.cni.report import CheckReport, PodSection, render_text, to_json
from nodemeta.cni.scan import list_binaries, scan

__all__ = ["EXIT_NO_INPUT", "EXIT_USAGE", "add_arguments", "build_report", "run"]

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
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(cni_parser=check)


def build_report(
    conf_dir: str,
    model: RuntimeModel,
    required: tuple[str, ...],
    bin_dirs: list[str],
    loaded: LoadedView | None = None,
    pods: tuple[PodSection, ...] | None = None,
) -> CheckReport:
    """Scan, evaluate and find, once (the pod audit can pass its sections in `pods`)."""
    binaries = list_binaries(bin_dirs) if bin_dirs else None
    state = evaluate(scan(conf_dir), conf_dir=conf_dir, model=model, required=required, binaries=binaries)
    return CheckReport(state, find([state], loaded), loaded, pods)


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def run(args: argparse.Namespace) -> int:
    """Run the `nodemeta cni` subcommand the arguments name; returns the exit code."""
    parser: argparse.ArgumentParser = args.cni_parser
    if args.max_conf_num < 0:
        parser.error("--max-conf-num must be 0 or more")
    if any(not t.strip() or "/" in t for t in args.require):
        parser.error("--require takes a plugin type: a binary name, not empty and without '/'")
    model = RuntimeModel(RuntimeKind(args.runtime), args.max_conf_num, args.default_network)
    required = required_types(args.preset, (t.strip() for t in args.require))
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
    report = build_report(args.conf_dir, model, required, args.bin_dir, loaded)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(to_json(report), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        sys.stdout.write(render_text(report))
    sys.stdout.flush()
    return report.exit_code

"""The demo's command-line options: `add_arguments` for `nodemeta demo` (and `python -m nodemeta.demo`), and the
checks argparse cannot make on one flag alone."""

from __future__ import annotations

import argparse

__all__ = ["DEFAULTS", "add_arguments", "problem"]

# A cluster that builds in a few seconds on two cores yet is big enough for the difference to show: at 100 nodes,
# an agent watching the whole cluster receives about a hundred times what its own node needs.
DEFAULTS = {
    "nodes": 100,
    "pods_per_node": 30,
    "seed": 7,
    "churn_rate": 5.0,
    "subscribers": 4,
    "falco_subscribers": 1,
    "duration": 0.0,
}


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's flags, on `parser` (a subcommand parser or a parser of its own)."""
    d = DEFAULTS
    cluster = parser.add_argument_group("the simulated cluster")
    cluster.add_argument("--nodes", type=_positive, default=d["nodes"], metavar="N",
                         help=f"nodes in the generated cluster (default {d['nodes']})")  # fmt: skip
    cluster.add_argument("--pods-per-node", type=_positive, default=d["pods_per_node"], metavar="N",
                         help=f"about this many pods on each node (default {d['pods_per_node']})")  # fmt: skip
    cluster.add_argument("--seed", type=int, default=d["seed"], metavar="N",
                         help=f"seed of the generated cluster and of its churn (default {d['seed']})")  # fmt: skip
    cluster.add_argument("--churn-rate", type=_non_negative, default=d["churn_rate"], metavar="R",
                         help="churn actions per second once everyone has synced: rollouts, scaling, pod "
                              "deaths, label edits, node drains, namespace changes (default %(default)g; "
                              "0 = none)")  # fmt: skip
    clients = parser.add_argument_group("subscribers")
    clients.add_argument("--subscribers", type=_positive, default=d["subscribers"], metavar="N",
                         help="nodes with a nodemeta.v1 subscriber, spread across the cluster "
                              f"(default {d['subscribers']})")  # fmt: skip
    clients.add_argument("--falco-subscribers", type=_count, default=d["falco_subscribers"], metavar="N",
                         help="of those nodes, how many also get a Falco-protocol (metadata.Metadata/Watch) "
                              "subscriber, to compare the two contracts "
                              f"(default {d['falco_subscribers']})")  # fmt: skip
    run = parser.add_argument_group("running")
    run.add_argument("--duration", type=_non_negative, default=d["duration"], metavar="SECONDS",
                     help="stop by itself this long after every subscriber has synced, then print the summary "
                          "(default 0 = until Ctrl-C)")  # fmt: skip
    run.add_argument("--plain", action="store_true",
                     help="print a status line every few seconds instead of redrawing the screen (the default "
                          "when stdout is not a terminal)")  # fmt: skip
    run.add_argument("--log-level", dest="demo_log_level", default="warning",
                     choices=["debug", "info", "warning", "error"],
                     help="log level of the embedded simulator and collector, on stderr (default warning)")  # fmt: skip


def problem(args: argparse.Namespace) -> str | None:
    """What is wrong with a combination of flags, or None."""
    if args.subscribers > args.nodes:
        return f"--subscribers ({args.subscribers}) cannot exceed --nodes ({args.nodes})"
    if args.falco_subscribers > args.subscribers:
        return f"--falco-subscribers ({args.falco_subscribers}) cannot exceed --subscribers ({args.subscribers})"
    return None

"""`nodemeta demo`: the README's first command. One process runs a simulated cluster with churn, the collector and a
few node subscribers, and shows live what each node receives against what watching the API server directly costs.

For the command line: `add_arguments(parser)` adds the flags, `problem(args)` says what is wrong with a combination
of them (None when nothing is; `run` checks it too), and `await run(args)` runs the demo and returns the exit
status. Importing this package is cheap; `run` loads the simulator, the collector and gRPC when called.
"""

from __future__ import annotations

import argparse

from nodemeta.demo.options import add_arguments, problem

__all__ = ["add_arguments", "problem", "run"]


async def run(args: argparse.Namespace) -> int:
    """Run the demo with the flags `add_arguments` defines; returns the process exit status."""
    from nodemeta.demo.runner import run as run_demo

    return await run_demo(args)

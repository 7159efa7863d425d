"""`python -m nodemeta.demo`: the demo without the `nodemeta` command (what scripts/demo runs)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from nodemeta.demo import add_arguments, problem, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nodemeta demo",
        description="Run a simulated cluster with churn, the nodemeta collector and a few node subscribers in one "
        "process, and show what each node receives against what watching the API server directly costs.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    wrong = problem(args)
    if wrong is not None:
        parser.error(wrong)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:  # Ctrl-C before the demo's own handler was installed
        return 130


if __name__ == "__main__":
    sys.exit(main())

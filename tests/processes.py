"""`nodemeta` commands run as real processes by the tests: started with this interpreter, stopped with SIGTERM, and
required to exit 0 (their stderr tail is the failure message otherwise)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def nodemeta_process(*args: str, stop_timeout: float = 15.0) -> AsyncIterator[asyncio.subprocess.Process]:
    """`nodemeta ARGS...` running for the block; SIGTERM after it (unless it already ended), then exit code 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nodemeta.cli", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(stop_timeout):
            _, err = await process.communicate()
        assert process.returncode == 0, err.decode()[-3000:]

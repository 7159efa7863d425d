"""The demo as people run it: a subprocess with stdout piped (status lines), on a terminal (the redrawn screen),
stopped by its duration or by Ctrl-C; plus the flags it refuses. One in-process run checks that it leaves no task
behind (the root conftest's guard)."""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from nodemeta.demo import __main__ as demo_main
from nodemeta.demo import add_arguments, run
from nodemeta.demo import runner as demo_runner

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--nodes", "10", "--pods-per-node", "8", "--subscribers", "2"]


def demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nodemeta.demo", *args]


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(demo_command(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class Reader:
    """Collects a pipe's lines in the background, so a test can wait for one of them."""

    def __init__(self, pipe: IO[str] | None) -> None:
        assert pipe is not None
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"{text!r} not printed within {timeout} s:\n{self.text}"
            time.sleep(0.05)

    def join(self) -> str:
        self._thread.join(timeout=10)
        return self.text

    @property
    def text(self) -> str:
        return "".join(self.lines)


def byte_ratio(output: str) -> int:
    found = re.findall(r"a node receives 1/([\d,]+) of the bytes", output)
    assert found, output
    return int(found[-1].replace(",", ""))


def test_demo_runs_for_its_duration_and_every_subscriber_matches_the_cluster() -> None:
    started = time.monotonic()
    done = subprocess.run(demo_command(*SMALL, "--duration", "6"), cwd=ROOT, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert time.monotonic() - started < 45
    # Progress while the cluster builds, then the milestones.
    assert "building a cluster of 10 nodes" in out
    assert "cluster built:" in out
    assert "collector serving on 127.0.0.1:" in out
    assert "3 subscribers streaming" in out
    # Live status lines with per-node counts (2 nodemeta.v1 subscribers, 1 Falco one on the first node).
    status = [line for line in out.splitlines() if line.startswith("[live ")]
    assert status, out
    assert re.search(r"node-1 v1: \d+ objects, \d+ events \(\d+/\d+/\d+\), [\d.]+ [KM]?B", status[-1]), status[-1]
    assert "node-1 falco:" in status[-1] and "node-6 v1:" in status[-1]
    assert "full-cluster watch:" in status[-1]
    # The comparison the project exists for.
    assert "watching the whole cluster" in out
    assert "watching only its node's pods" in out
    assert byte_ratio(out) > 1
    # Correctness, checked against the simulator's ground truth.
    summary = out[out.index("nodemeta demo: 10 nodes") :]
    rows = [line for line in summary.splitlines() if line.startswith("node-")]
    assert len(rows) == 3, summary
    assert all("matches the cluster" in row for row in rows), summary
    assert "all 3 subscribers hold exactly what the cluster has" in out
    assert "Traceback" not in done.stderr, done.stderr


def test_ctrl_c_while_live_stops_promptly_with_the_summary() -> None:
    process = start(*SMALL, "--duration", "0")
    reader = Reader(process.stdout)
    try:
        reader.wait_for("live: churn", timeout=40)
        time.sleep(1.5)
        process.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        code = process.wait(timeout=20)
        took = time.monotonic() - stopped
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out = reader.join()
    assert code == 0, f"{out}\n{process.stderr.read() if process.stderr else ''}"
    assert took < 10, took
    assert "stopping (again to stop at once)" in out
    assert out.count("matches the cluster (") == 3, out


def test_sigterm_during_the_build_stops_at_once() -> None:
    # A cluster that takes several seconds to build; the signal arrives while it builds.
    process = start("--nodes", "300", "--pods-per-node", "30")
    reader = Reader(process.stdout)
    try:
        reader.wait_for("building a cluster", timeout=30)
        process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        code = process.wait(timeout=20)
        took = time.monotonic() - stopped
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out = reader.join()
    assert code == 0, out
    assert took < 10, took
    assert "stopped during the cluster build" in out


def test_on_a_terminal_the_screen_is_redrawn_in_place() -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 140, 0, 0))
    process = subprocess.Popen(demo_command(*SMALL, "--duration", "2"), cwd=ROOT, stdin=subprocess.DEVNULL,
                               stdout=slave, stderr=subprocess.PIPE)  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO once the process closed its end
                return
            if not data:
                return
            chunks.append(data)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    thread.join(timeout=10)
    os.close(master)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert code == 0, out
    assert out.count("\x1b[H") >= 3, "the screen was not redrawn"
    assert "\x1b[?25h" in out, "the cursor was not shown again"
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "EACH SUBSCRIBED NODE RECEIVES FROM NODEMETA" in text
    assert "EACH NODE'S AGENT WITHOUT NODEMETA" in text
    assert byte_ratio(text) > 1
    assert text.count("matches the cluster (") == 3, text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nodes", "0"], "must be at least 1"),
        (["--nodes", "many"], "expected a whole number"),
        (["--churn-rate", "-1"], "must be a finite number >= 0"),
        (["--duration", "soon"], "expected a number"),
        (["--nodes", "3", "--subscribers", "4"], "--subscribers (4) cannot exceed --nodes (3)"),
        (["--subscribers", "2", "--falco-subscribers", "3"], "--falco-subscribers (3) cannot exceed"),
        (["--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_bad_flags_are_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        demo_main.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: nodemeta demo" in err
    assert message in err


async def test_run_in_process_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `nodemeta demo` calls; the autouse leak guard fails the test if any task outlives it."""
    monkeypatch.setattr(demo_runner.logs, "configure", lambda *_a, **_k: None)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--nodes", "4", "--pods-per-node", "6", "--subscribers", "2", "--duration", "1",
                              "--churn-rate", "10", "--plain"])  # fmt: skip
    assert await run(args) == 0
    out = capsys.readouterr().out
    assert "all 3 subscribers hold exactly what the cluster has" in out


async def test_run_refuses_inconsistent_flags(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--nodes", "2", "--subscribers", "3"])
    assert await run(args) == 2
    assert "--subscribers (3) cannot exceed --nodes (2)" in capsys.readouterr().err

"""What the demo prints: a live screen on a terminal (plain ANSI, redrawn twice a second), status lines otherwise,
and the final summary.

Rendering is pure (state in, lines out); `Screen` and `Plain` only decide when to write and how.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from typing import TextIO

from nodemeta.demo.meter import Meter
from nodemeta.demo.state import BUILDING, LIVE, STARTING, STOPPING, SYNCING, Comparison, DemoState, owners

__all__ = ["Plain", "Screen", "Style", "frame", "human_bytes", "plain_line", "ratio", "summary"]

# Seconds between status lines when stdout is not a terminal, and between build progress lines.
PLAIN_EVERY = 2.0
PROGRESS_EVERY = 1.0


class Style:
    """ANSI attributes, or nothing when writing to a file or pipe."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def cyan(self, text: str) -> str:
        return self._wrap("36", text)


# -- numbers ---------------------------------------------------------------------------------------------------------


def count(value: float) -> str:
    return f"{round(value):,}"


def human_bytes(value: float) -> str:
    """Decimal units, three significant digits: 512 B, 21.3 KB, 10.2 MB, 1.05 GB."""
    if value < 1000:
        return f"{round(value)} B"
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            return f"{value:.3g} {unit}" if value < 100 else f"{round(value)} {unit}"
    raise AssertionError("unreachable")


def per_second(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{round(value):,}"


def ratio(value: float | None) -> str:
    """A share as "1/N" (N rounded), for how much less a node receives."""
    if value is None:
        return "-"
    if value >= 10:
        return f"1/{round(value):,}"
    return f"1/{value:.2g}"


def clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


# -- rows --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    held: Counter[str]
    create: float
    update: float
    delete: float
    events_per_s: float
    bytes: float
    bytes_per_s: float

    @classmethod
    def of(cls, label: str, held: Counter[str], meter: Meter) -> Row:
        return cls(label, held, meter.create, meter.update, meter.delete, meter.event_rate.rate(), meter.bytes,
                   meter.byte_rate.rate())  # fmt: skip

    @property
    def events(self) -> float:
        return self.create + self.update + self.delete


_HEAD = (
    f"{'':<26}{'objects held':>24}  {'events received':>34}  {'bytes received':>20}",
    f"{'':<26}{'pods':>6}{'ns':>5}{'svc':>6}{'owners':>7}  "
    f"{'create':>8}{'update':>8}{'delete':>8}{'per s':>10}  {'total':>10}{'per s':>10}",
)


def _row(row: Row) -> str:
    h = row.held
    return (
        f"{row.label:<26}{count(h['Pod']):>6}{count(h['Namespace']):>5}{count(h['Service']):>6}{count(owners(h)):>7}  "
        f"{count(row.create):>8}{count(row.update):>8}{count(row.delete):>8}{per_second(row.events_per_s):>10}  "
        f"{human_bytes(row.bytes):>10}{human_bytes(row.bytes_per_s):>10}"
    )


def subscriber_rows(state: DemoState) -> list[Row]:
    rows = []
    for sub in state.subscribers:
        label = f"{sub.node} {sub.protocol}"
        if not sub.connected:
            label += " (connecting)"
        rows.append(Row.of(label, sub.held_by_kind(), sub.meter))
    return rows


def direct_rows(state: DemoState) -> list[Row]:
    full = state.full
    if full is None:
        return []
    rows = [Row.of("whole cluster", full.held_by_kind(), full.total)]
    if state.filtered:
        # Each node-filtered agent: its own pod watch, plus the same Namespace, Service and owner watches as above.
        pods = full.meter("Pod")
        n = len(state.filtered)
        held: Counter[str] = Counter()
        for watch in state.filtered.values():
            held.update(watch.held_by_kind())
        held = Counter({k: round(v / n) for k, v in held.items()})
        rest = full.held_by_kind()
        rest["Pod"] = 0
        held.update(rest)
        watches = list(state.filtered.values())

        def avg(read: float, full_part: float) -> float:
            return read / n + full_part

        totals = [w.total for w in watches]
        rows.append(
            Row(
                "its node's pods only (avg)",
                held,
                avg(sum(m.create for m in totals), full.total.create - pods.create),
                avg(sum(m.update for m in totals), full.total.update - pods.update),
                avg(sum(m.delete for m in totals), full.total.delete - pods.delete),
                avg(sum(m.event_rate.rate() for m in totals), full.total.event_rate.rate() - pods.event_rate.rate()),
                avg(sum(m.bytes for m in totals), full.total.bytes - pods.bytes),
                avg(sum(m.byte_rate.rate() for m in totals), full.total.byte_rate.rate() - pods.byte_rate.rate()),
            )
        )
    return rows


# -- the screen ------------------------------------------------------------------------------------------------------


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = round(width * done / total) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _header(state: DemoState, now: float) -> str:
    size = f"{state.nodes} nodes x {state.pods_per_node} pods (seed {state.seed})"
    if state.stage == LIVE:
        left = f"live {clock(state.live_seconds(now))}"
        if state.duration:
            left += f" of {clock(state.duration)}"
        stage = f"{left} · Ctrl-C: stop and check"
    elif state.live_until is not None:
        stage = f"{state.stage} after {clock(state.live_seconds(now))} live"
    else:
        stage = f"{state.stage} ({now - state.stage_since:.1f} s)"
    return f"nodemeta demo · {size} · {stage}"


def _cluster_line(state: DemoState) -> str:
    done, skipped = state.churn_actions()
    churn = f"churn {count(done)} actions ({state.churn_rate:g}/s" + (f", {skipped} skipped)" if skipped else ")")
    if state.churn is None:
        churn = "churn starts once every subscriber has synced" if state.churn_rate else "no churn"
    writes = f"{count(state.writes)} API writes ({per_second(state.write_rate.rate())}/s)"
    return f"{count(state.pods())} pods on {count(state.cluster_nodes())} nodes · {churn} · {writes}"


def _collector_line(state: DemoState) -> str:
    collector = state.collector
    if collector is None:
        return "not started"
    readiness = collector.readiness()
    status = "ready" if readiness.ready else f"not ready: {readiness.detail}"
    return (
        f"{status} · {collector.broker.subscriber_count} subscribers · one watch per kind on the API server, "
        f"{count(state.collector_api_events())} events received from it"
    )


def comparison_lines(c: Comparison, style: Style, *, final: bool = False) -> list[str]:
    lines = [
        style.bold(
            f"a node receives {ratio(c.byte_ratio)} of the bytes and {ratio(c.event_ratio)} of the events "
            "of a full-cluster watch"
        )
    ]
    if c.filtered_bytes is not None:
        lines.append(f"  and {ratio(c.filtered_byte_ratio)} of the bytes of a node-filtered pod watch (which still "
                     "needs every namespace, service and owner)")  # fmt: skip
    lines.append(
        f"  across {count(c.nodes)} nodes: {human_bytes(c.full_bytes * c.nodes)} from the API server without nodemeta;"
    )
    lines.append(
        f"  with it, one watch (the collector's) and about {human_bytes(c.node_bytes * c.nodes)} from the collector "
        "to the nodes" + (" in all" if final else " so far")
    )
    return lines


def frame(state: DemoState, now: float, style: Style) -> list[str]:
    """The live screen."""
    lines = [style.bold(_header(state, now)), ""]
    if state.stage == BUILDING:
        plan = state.plan
        if plan is not None:
            lines.append(f"planned: {count(plan.expected_pods())} pods, {len(plan.deployments)} deployments, "
                         f"{len(plan.services)} services in {len(plan.namespaces)} namespaces")  # fmt: skip
        if state.build_total:
            lines.append(f"{state.build_phase:<24}{_bar(state.build_done, state.build_total)} "
                         f"{count(state.build_done)}/{count(state.build_total)}")  # fmt: skip
        lines.append(f"elapsed {now - state.started:.1f} s")
    else:
        lines.append(f"{style.cyan('cluster  ')} {_cluster_line(state)}")
        lines.append(f"{style.cyan('collector')} {_collector_line(state)}")
        lines.append("")
        lines.append(style.bold("EACH SUBSCRIBED NODE RECEIVES FROM NODEMETA") + style.dim(
            "  (v1: nodemeta.v1, batched; falco: metadata.Metadata, a message per event)"))  # fmt: skip
        lines += [style.dim(h) for h in _HEAD]
        lines += [_row(r) for r in subscriber_rows(state)]
        if state.stage == SYNCING:
            lines.append(style.dim(f"initial sync: {state.synced_subscribers()}/{len(state.subscribers)} subscribers"))
        lines.append("")
        lines.append(style.bold("EACH NODE'S AGENT WITHOUT NODEMETA") + style.dim(
            "  (a real client listing and watching the API server itself)"))  # fmt: skip
        lines += [_row(r) for r in direct_rows(state)]
        lines.append("")
        comparison = state.comparison()
        if comparison is not None and state.stage not in (STARTING, SYNCING):
            lines += comparison_lines(comparison, style)
    recent = state.notes[-4:]
    if recent:
        lines.append("")
        lines += [style.dim(f"{n.at - state.started:6.1f} s  {n.text}") for n in recent]
    return lines


def plain_line(state: DemoState, now: float) -> str:
    """One compact status line (when stdout is not a terminal)."""
    done, _ = state.churn_actions()
    parts = [
        f"[live {clock(state.live_seconds(now))}] {count(state.pods())} pods, {count(done)} churn actions, "
        f"{count(state.writes)} API writes"
    ]
    for sub in state.subscribers:
        m = sub.meter
        parts.append(f"{sub.node} {sub.protocol}: {len(sub.held)} objects, {count(m.events)} events "
                     f"({count(m.create)}/{count(m.update)}/{count(m.delete)}), {human_bytes(m.bytes)}")  # fmt: skip
    if state.full is not None:
        t = state.full.total
        parts.append(f"full-cluster watch: {count(t.events)} events, {human_bytes(t.bytes)}")
    c = state.comparison()
    if c is not None:
        parts.append(f"a node receives {ratio(c.byte_ratio)} of the bytes")
    return " | ".join(parts)


# -- the summary -----------------------------------------------------------------------------------------------------


def summary(state: DemoState, now: float, style: Style) -> list[str]:
    lines = [""]
    if state.live_since is None:
        stage = state.previous_stage if state.stage == STOPPING else state.stage
        where = "during the cluster build" if stage == BUILDING else f"while {stage}"
        lines.append(style.bold(f"nodemeta demo stopped {where}, before going live."))
        if not state.subscribers:
            return lines
    done, _ = state.churn_actions()
    live = state.live_seconds(now)
    lines.append(style.bold(
        f"nodemeta demo: {count(state.cluster_nodes())} nodes, {count(state.pods())} pods; live {live:.1f} s with "
        f"{count(done)} churn actions ({state.churn_rate:g}/s), {count(state.writes)} API writes in all"
    ))  # fmt: skip
    lines.append("")
    lines.append(style.dim(f"{'node':<10}{'stream':<8}{'objects':>8}  {'events (create/update/delete)':<30}"
                           f"{'messages':>9}{'bytes':>10}  state"))  # fmt: skip
    for sub in state.subscribers:
        m = sub.meter
        events = f"{count(m.events)} ({count(m.create)}/{count(m.update)}/{count(m.delete)})"
        verdict = state.verdicts.get(sub.label)
        if verdict is None:
            check = style.dim("not checked")
        elif verdict.matches and not sub.problem_count:
            check = style.green(verdict.describe())
        else:
            check = style.red(verdict.describe())
        lines.append(f"{sub.node:<10}{sub.protocol:<8}{len(sub.held):>8}  {events:<30}{count(m.messages):>9}"
                     f"{human_bytes(m.bytes):>10}  {check}")  # fmt: skip
        if verdict is not None:
            lines += [style.red(f"    {d}") for d in verdict.details]
        if sub.problem_count:
            lines.append(style.red(f"    {sub.problem_count} stream problems, e.g. {sub.problems[0]}"))
        if sub.reconnects:
            lines.append(style.dim(f"    reconnected {sub.reconnects} times (last: {sub.last_error})"))
    if state.full is not None:
        lines.append("")
        lines.append("without nodemeta, each node's agent receives (measured with a real API client):")
        t = state.full.total
        lines.append(
            f"  watching the whole cluster              {count(t.events):>9} events  {human_bytes(t.bytes):>10}"
        )
        c = state.comparison()
        if c is not None and c.filtered_events is not None and c.filtered_bytes is not None:
            lines.append(f"  watching only its node's pods (+ rest)  {count(c.filtered_events):>9} events  "
                         f"{human_bytes(c.filtered_bytes):>10}  (average of {len(state.filtered)} nodes)")  # fmt: skip
        if c is not None:
            lines.append(f"  with nodemeta                           {count(c.node_events):>9} events  "
                         f"{human_bytes(c.node_bytes):>10}  (average of {len(state.v1_subscribers())} v1 "
                         "subscribers)")  # fmt: skip
            lines.append("")
            lines += comparison_lines(c, style, final=True)
            lines.append(style.dim("  (bytes are message payloads as received, HTTP bodies or gRPC messages, without "
                                   "transport headers)"))  # fmt: skip
    if state.verdicts:
        lines.append("")
        bad = [label for label, v in state.verdicts.items() if not v.matches]
        bad += [s.label for s in state.subscribers if s.problem_count and s.label not in bad]
        if bad:
            lines.append(style.red(f"{len(bad)} of {len(state.verdicts)} subscribers differ from the cluster: "
                                   f"{', '.join(bad)}"))  # fmt: skip
        else:
            lines.append(style.green(f"all {len(state.verdicts)} subscribers hold exactly what the cluster has for "
                                     "their node (compared with the simulator's ground truth)"))  # fmt: skip
    return lines


# -- output ------------------------------------------------------------------------------------------------------


class Screen:
    """Redraws the whole screen in place (cursor home, each line cleared to its end)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.style = Style(True)
        self._started = False

    def update(self, state: DemoState, now: float) -> None:
        columns, rows = shutil.get_terminal_size()
        lines = frame(state, now, self.style)[: max(1, rows - 1)]
        text = "".join(_fit(line, columns) + "\x1b[K\n" for line in lines)
        prefix = "\x1b[?25l\x1b[2J\x1b[H" if not self._started else "\x1b[H"
        self._started = True
        self.out.write(prefix + text + "\x1b[J")
        self.out.flush()

    def finish(self, state: DemoState, now: float) -> None:
        self.out.write("\x1b[?25h")
        self.out.write("\n".join(summary(state, now, self.style)) + "\n")
        self.out.flush()

    def restore(self) -> None:
        """Show the cursor again, whatever happened."""
        self.out.write("\x1b[?25h")
        self.out.flush()


class Plain:
    """Milestones as they happen, build progress every second, a status line every few seconds once live."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.style = Style(False)
        self._notes = 0
        self._last_progress = 0.0
        self._last_phase = ""
        self._last_status = 0.0

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def update(self, state: DemoState, now: float) -> None:
        for note in state.notes[self._notes :]:
            self._say(f"{note.at - state.started:6.1f} s  {note.text}")
        self._notes = len(state.notes)
        due = state.build_phase != self._last_phase or now - self._last_progress >= PROGRESS_EVERY
        if state.stage == BUILDING and state.build_total and due:
            self._last_phase = state.build_phase
            self._last_progress = now
            self._say(f"{now - state.started:6.1f} s  building: {state.build_phase} "
                      f"{state.build_done}/{state.build_total}")  # fmt: skip
        if state.stage == LIVE and now - self._last_status >= PLAIN_EVERY:
            self._last_status = now
            self._say(plain_line(state, now))

    def finish(self, state: DemoState, now: float) -> None:
        self.update(state, now)
        self._say("\n".join(summary(state, now, self.style)))

    def restore(self) -> None:
        pass


def _fit(line: str, columns: int) -> str:
    """Cut a line to the terminal's width (counting only printed characters, not ANSI codes)."""
    if columns <= 0:
        return line
    out = []
    shown = 0
    i = 0
    while i < len(line):
        if line[i] == "\x1b":
            end = line.find("m", i)
            if end < 0:
                break
            out.append(line[i : end + 1])
            i = end + 1
            continue
        if shown >= columns:
            i += 1
            continue
        out.append(line[i])
        shown += 1
        i += 1
    return "".join(out)

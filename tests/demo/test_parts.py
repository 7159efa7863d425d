"""The demo's pure parts: node choice, numbers as printed, rates, and the comparison with the ground truth."""

from __future__ import annotations

from nodemeta.demo.meter import Meter, RateMeter
from nodemeta.demo.runner import pick_nodes
from nodemeta.demo.verify import differences
from nodemeta.demo.view import _fit, human_bytes, ratio


def test_subscribed_nodes_are_spread_over_the_cluster() -> None:
    assert pick_nodes(100, 4) == ["node-1", "node-26", "node-51", "node-76"]
    assert pick_nodes(10, 2) == ["node-1", "node-6"]
    assert pick_nodes(3, 3) == ["node-1", "node-2", "node-3"]


def test_numbers_as_printed() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(999) == "999 B"
    assert human_bytes(21_300) == "21.3 KB"
    assert human_bytes(123_456) == "123 KB"
    assert human_bytes(10_240_000) == "10.2 MB"
    assert human_bytes(3_470_000_000) == "3.47 GB"
    assert ratio(396.4) == "1/396"
    assert ratio(1_234.0) == "1/1,234"
    assert ratio(2.5) == "1/2.5"
    assert ratio(None) == "-"


def test_rates_follow_the_last_window() -> None:
    rate = RateMeter(window=5.0)
    assert rate.rate() == 0.0
    for second in range(11):
        rate.sample(float(second), second * 10.0)  # 10 per second
    assert rate.rate() == 10.0
    for second in range(11, 20):
        rate.sample(float(second), 100.0)  # then nothing
    assert rate.rate() == 0.0


def test_meter_counts_by_reason() -> None:
    meter = Meter()
    meter.count("Create", 3)
    meter.count("Update")
    meter.count("Delete", 2)
    assert (meter.create, meter.update, meter.delete, meter.events) == (3, 1, 2, 6)


def test_differences_name_what_is_missing_extra_or_different() -> None:
    truth = {("Pod", "a"): ('{"name":"a"}', "{}", {"Service": ()}), ("Namespace", "n"): ('{"name":"n"}', None, None)}
    assert differences(dict(truth), truth).matches
    held = {("Pod", "a"): ('{"name":"a"}', '{"podIP":"10.0.0.1"}', {"Service": ()}), ("Pod", "x"): ("{}", "{}", None)}
    verdict = differences(held, truth)
    assert (verdict.missing, verdict.extra, verdict.different) == (1, 1, 1)
    assert verdict.describe() == "DIFFERS from the cluster: 1 missing, 1 extra, 1 different"
    assert any(d.startswith("missing Namespace n") for d in verdict.details)
    assert differences(dict(truth), truth).describe() == "matches the cluster (2 objects)"


def test_lines_are_cut_to_the_terminal_without_breaking_colours() -> None:
    line = "\x1b[1mheadline\x1b[0m and more"
    assert _fit(line, 4) == "\x1b[1mhead\x1b[0m"
    assert _fit("short", 80) == "short"

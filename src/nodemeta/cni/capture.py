"""Is a pod's traffic captured by its mesh proxy? Pure analysis of a network namespace's packet rules and routing.

A mesh proxy only sees the pod's traffic when its capture rules are installed in the pod's network namespace, by
the mesh's init container or by its chained CNI plugin. When the CNI chain lost the mesh plugin, the pod runs
without them and its traffic bypasses the proxy (plaintext instead of mTLS) without any error anywhere. This module
judges what is installed; reading it from a namespace is `nodemeta.cni.netns`.

Input is data: the text `iptables-save` / `ip6tables-save` print (the nf_tables and the legacy backends share that
format), parsed here into tables, chains and rules, plus the namespace's policy-routing rules and local routes as
small records. Output is an `Audit`: per address family a `FamilyResult` and one overall `CaptureState`.

A mesh's capture is described by a `Profile`: which hook jumps into which chain, which port it redirects to, which
uid/gid is exempt (the proxy's own traffic, without which traffic would loop). "Present" means all of

* the jump from the built-in hook (PREROUTING, OUTPUT) into the mesh chain,
* a REDIRECT (nat) or TPROXY (mangle) to the expected port reachable from that chain,
* on the outbound side, a RETURN for the proxy's uid or gid before that redirect,
* for TPROXY: the MARK chain, an `ip rule fwmark <mark> lookup <table>` and a `local default dev lo` route in
  that table (without any one of them, inbound connections are not delivered to the proxy).

A mesh chain that exists while its jump does not is reported as partial, with exactly what is missing.

Each backend (nft, legacy) is judged on its own, because chains live in one backend and a jump cannot cross
to the other; a family is captured when one backend holds the complete capture.
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ISTIO",
    "ISTIO_TPROXY",
    "LINKERD",
    "PROFILES",
    "Audit",
    "BackendResult",
    "CaptureState",
    "Chain",
    "Dump",
    "Family",
    "FamilyResult",
    "IpRule",
    "Missing",
    "NetnsView",
    "ParseProblem",
    "Profile",
    "Redirect",
    "Route",
    "Rule",
    "Ruleset",
    "Table",
    "Tproxy",
    "evaluate",
    "evaluate_family",
    "parse_save",
]


class Family(enum.StrEnum):
    V4 = "v4"
    V6 = "v6"


class CaptureState(enum.StrEnum):
    CAPTURED = "captured"
    # None of the profile's packet rules are there.
    RULES_MISSING = "rules-missing"
    # Some are there, some not (`missing` says which).
    RULES_PARTIAL = "rules-partial"
    # Not captured, and the libcni result cache shows the mesh plugin was not in the chain when the pod was added:
    # the cause is the CNI configuration, not the rules.
    PLUGIN_MISSING_AT_ADD = "plugin-missing-at-add"


# --- iptables-save text -------------------------------------------------------------------------------------------

# Problems kept per dump; a garbage input of a million lines must not become a million records.
_MAX_PROBLEMS = 50
# Characters of an offending line kept in a problem.
_MAX_QUOTED = 200


@dataclass(frozen=True, slots=True)
class ParseProblem:
    """A line of the dump that was not understood (and skipped)."""

    line: int
    reason: str
    text: str


@dataclass(frozen=True, slots=True)
class Rule:
    """One `-A CHAIN ...` line. `matches` are the tokens before the target, `target_args` the ones after it."""

    chain: str
    matches: tuple[str, ...]
    target: str = ""
    target_args: tuple[str, ...] = ()
    # `-g` (goto) instead of `-j`: the called chain does not come back here.
    goto: bool = False
    line: int = 0

    def match(self, *names: str) -> str | None:
        """The value of the first of the match options `names` that is present and not negated, else None."""
        return _option(self.matches, names)

    def negated(self, *names: str) -> bool:
        """Whether one of the match options `names` is present with a `!` before it."""
        tokens = self.matches
        return any(token in names and i > 0 and tokens[i - 1] == "!" for i, token in enumerate(tokens))

    def target_option(self, *names: str) -> str | None:
        return _option(self.target_args, names)


def _option(tokens: Sequence[str], names: Sequence[str]) -> str | None:
    for i, token in enumerate(tokens):
        if token in names and i + 1 < len(tokens) and not (i > 0 and tokens[i - 1] == "!"):
            return tokens[i + 1]
    return None


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    # ACCEPT/DROP for built-in chains, None for user-defined ones (printed as "-").
    policy: str | None = None


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    chains: Mapping[str, Chain]
    rules: Mapping[str, tuple[Rule, ...]]

    def chain_rules(self, chain: str) -> tuple[Rule, ...]:
        return self.rules.get(chain, ())


@dataclass(frozen=True, slots=True)
class Ruleset:
    """A parsed dump: tables by name (nat, mangle, filter, raw, ...) and the lines that were skipped."""

    tables: Mapping[str, Table] = field(default_factory=dict)
    problems: tuple[ParseProblem, ...] = ()

    def table(self, name: str) -> Table:
        return self.tables.get(name) or Table(name, {}, {})

    @property
    def rule_count(self) -> int:
        return sum(len(rules) for table in self.tables.values() for rules in table.rules.values())


class _TableBuilder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.chains: dict[str, Chain] = {}
        self.rules: dict[str, list[Rule]] = {}

    def build(self) -> Table:
        return Table(self.name, dict(self.chains), {name: tuple(rules) for name, rules in self.rules.items()})


def parse_save(text: str) -> Ruleset:
    """Parse `iptables-save` / `ip6tables-save` output. Never raises: what is not understood becomes a problem.

    Understood: `# comments`, `*table`, `:CHAIN POLICY [packets:bytes]`, `-A CHAIN args...` (optionally preceded by
    `[packets:bytes]` as `-c` prints it), `COMMIT`. Arguments are split like the shell would split them with double
    quotes (how iptables-save quotes comments and log prefixes); match modules are kept as tokens, so modules this
    code has never heard of do no harm. A table seen twice (concatenated dumps) is merged.
    """
    tables: dict[str, _TableBuilder] = {}
    problems: list[ParseProblem] = []
    current: _TableBuilder | None = None

    def problem(number: int, reason: str, line: str) -> None:
        if len(problems) < _MAX_PROBLEMS:
            problems.append(ParseProblem(number, reason, line[:_MAX_QUOTED]))

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            name = line[1:].strip()
            if not name or any(c.isspace() for c in name):
                problem(number, "bad table header", raw)
                current = None
                continue
            current = tables.setdefault(name, _TableBuilder(name))
            continue
        if line == "COMMIT":
            current = None
            continue
        if current is None:
            problem(number, "outside a table", raw)
            continue
        if line.startswith(":"):
            parts = line[1:].split()
            if not parts:
                problem(number, "bad chain header", raw)
                continue
            policy = parts[1] if len(parts) > 1 and parts[1] != "-" else None
            current.chains[parts[0]] = Chain(parts[0], policy)
            current.rules.setdefault(parts[0], [])
            continue
        if line.startswith("["):
            # Counters from `iptables-save -c`: "[12:3456] -A CHAIN ..."
            end = line.find("]")
            if end < 0:
                problem(number, "bad counters", raw)
                continue
            line = line[end + 1 :].lstrip()
        tokens, quoted_ok = _split(line)
        if not quoted_ok:
            problem(number, "unterminated quote (rest of the line kept as one argument)", raw)
        if len(tokens) < 2 or tokens[0] not in ("-A", "--append"):
            problem(number, "not a rule", raw)
            continue
        rule = _rule(tokens[1], tokens[2:], number)
        if rule.chain not in current.chains:
            # iptables-save declares every chain first; a rule for an undeclared chain is still a rule.
            current.chains[rule.chain] = Chain(rule.chain)
        current.rules.setdefault(rule.chain, []).append(rule)
    return Ruleset({name: builder.build() for name, builder in tables.items()}, tuple(problems))


def _split(line: str) -> tuple[list[str], bool]:
    """Split a rule line into arguments; the flag is False when a quote was left open."""
    if '"' not in line and "\\" not in line:
        return line.split(), True
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    # iptables-save quotes with double quotes only; an apostrophe inside a comment is an ordinary character.
    lexer.quotes = '"'
    tokens: list[str] = []
    try:
        tokens.extend(lexer)
    except ValueError:
        # shlex stops at an open quote; keep what it read plus the rest of the line as one argument.
        rest = line.split('"', 1)[1] if '"' in line else ""
        return _unquoted_prefix(line) + ([rest] if rest else []), False
    return tokens, True


def _unquoted_prefix(line: str) -> list[str]:
    return line.split('"', 1)[0].split()


def _rule(chain: str, args: list[str], number: int) -> Rule:
    for i, token in enumerate(args):
        # A comment's text is one argument, but it may read "-j"; it never names the target.
        if i > 0 and args[i - 1] == "--comment":
            continue
        if token in ("-j", "--jump", "-g", "--goto") and i + 1 < len(args):
            return Rule(
                chain=chain,
                matches=tuple(args[:i]),
                target=args[i + 1],
                target_args=tuple(args[i + 2 :]),
                goto=token in ("-g", "--goto"),
                line=number,
            )
    return Rule(chain=chain, matches=tuple(args), line=number)


# --- Routing data -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IpRule:
    """A policy-routing rule, as `ip rule` shows it (only what the capture check needs)."""

    family: Family
    priority: int
    table: int
    # The fwmark selector, None when the rule does not match on the mark.
    fwmark: int | None = None
    fwmask: int = 0xFFFFFFFF
    # "lookup" for rules that send to `table`; anything else ("blackhole", "goto", ...) does not route to it.
    action: str = "lookup"


@dataclass(frozen=True, slots=True)
class Route:
    """A route, as `ip route show table all` shows it (only what the capture check needs)."""

    family: Family
    table: int
    # "local", "unicast", "broadcast", ...
    type: str
    # Destination prefix; "" with dst_len 0 is the default route.
    dst: str = ""
    dst_len: int = 0
    dev: str = ""


# --- Profiles -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Redirect:
    """Traffic entering built-in chain `hook` of `table` jumps into `chain`, which REDIRECTs it to `port`."""

    hook: str
    chain: str
    port: int
    table: str = "nat"


@dataclass(frozen=True, slots=True, kw_only=True)
class Tproxy:
    """Inbound transparent proxying: mangle `hook` -> `chain` -> `TPROXY --on-port port --tproxy-mark mark`.

    Marked packets are routed by `ip rule fwmark mark lookup route_table` into a table whose `local default dev lo`
    route delivers them to the local socket. `mark_chain`, when set, is the chain that marks packets of established
    proxy sockets (Istio's ISTIO_DIVERT: `-j MARK --set-xmark mark`); it must be reachable from the hook too.
    """

    hook: str = "PREROUTING"
    chain: str
    port: int
    mark: int
    route_table: int
    mark_chain: str | None = None
    table: str = "mangle"


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """How one mesh captures a pod's traffic. Ports, uids and chain names are the mesh's defaults; change them
    with `dataclasses.replace` when the mesh is configured differently."""

    name: str
    inbound: Redirect | Tproxy | None
    outbound: Redirect | None
    # The proxy's own traffic must leave unredirected: a RETURN for its uid (or gid) in the outbound chain.
    proxy_uid: int | None = None
    proxy_gid: int | None = None
    # Whether the outbound chain must also RETURN everything leaving through `lo` (Linkerd does).
    loopback_return: bool = False


LINKERD = Profile(
    name="linkerd",
    inbound=Redirect(hook="PREROUTING", chain="PROXY_INIT_REDIRECT", port=4143),
    outbound=Redirect(hook="OUTPUT", chain="PROXY_INIT_OUTPUT", port=4140),
    proxy_uid=2102,
    loopback_return=True,
)
ISTIO = Profile(
    name="istio",
    inbound=Redirect(hook="PREROUTING", chain="ISTIO_INBOUND", port=15006),
    outbound=Redirect(hook="OUTPUT", chain="ISTIO_OUTPUT", port=15001),
    proxy_uid=1337,
    proxy_gid=1337,
)
ISTIO_TPROXY = Profile(
    name="istio-tproxy",
    inbound=Tproxy(chain="ISTIO_INBOUND", port=15006, mark=1337, route_table=133, mark_chain="ISTIO_DIVERT"),
    outbound=Redirect(hook="OUTPUT", chain="ISTIO_OUTPUT", port=15001),
    proxy_uid=1337,
    proxy_gid=1337,
)
PROFILES: Mapping[str, Profile] = {p.name: p for p in (LINKERD, ISTIO, ISTIO_TPROXY)}


# --- Evaluation ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dump:
    """One backend's dump of one family: `ruleset` is what `<backend> iptables-save` printed, parsed."""

    family: Family
    backend: str
    ruleset: Ruleset


@dataclass(frozen=True, slots=True)
class NetnsView:
    """Everything the audit needs from one network namespace."""

    dumps: tuple[Dump, ...] = ()
    ip_rules: tuple[IpRule, ...] = ()
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True, slots=True)
class Missing:
    """One element of the capture that is not there. `check` is a stable identifier, `detail` says it in words."""

    check: str
    detail: str


# Checks that look at packet rules (as opposed to routing): a family where none of them pass is rules-missing.
_RULE_CHECKS = frozenset(
    {
        "inbound-jump",
        "inbound-redirect",
        "outbound-jump",
        "outbound-redirect",
        "owner-return",
        "loopback-return",
        "mark",
    }
)


@dataclass(frozen=True, slots=True)
class BackendResult:
    backend: str
    state: CaptureState
    missing: tuple[Missing, ...]
    passed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FamilyResult:
    """The verdict for one address family: the best backend's state and what it lacks (empty when captured)."""

    family: Family
    state: CaptureState
    # The backend judged ("nft", "legacy"); None when no backend had a dump.
    backend: str | None
    missing: tuple[Missing, ...]
    backends: tuple[BackendResult, ...] = ()


@dataclass(frozen=True, slots=True)
class Audit:
    profile: str
    state: CaptureState
    families: tuple[FamilyResult, ...]
    # From the libcni result cache: whether the mesh plugin was in the chain at ADD; None when unknown.
    plugin_at_add: bool | None = None

    @property
    def missing(self) -> tuple[str, ...]:
        """Everything missing, one line each, prefixed with the family."""
        return tuple(f"{f.family}: {m.detail}" for f in self.families for m in f.missing)

    def family(self, family: Family) -> FamilyResult | None:
        return next((f for f in self.families if f.family == family), None)


def evaluate(
    view: NetnsView,
    profile: Profile,
    *,
    families: Iterable[Family] = (Family.V4, Family.V6),
    plugin_at_add: bool | None = None,
) -> Audit:
    """Judge a namespace's capture for `profile` in each of `families`.

    The overall state is `captured` when every family is; otherwise `plugin-missing-at-add` when the result cache
    says the mesh plugin was not in the chain at ADD (the cause, whatever the rules look like); otherwise
    `rules-missing` when no family has any of the rules, else `rules-partial`.
    """
    results = tuple(evaluate_family(view, profile, family) for family in dict.fromkeys(families))
    states = {r.state for r in results}
    if states <= {CaptureState.CAPTURED}:
        state = CaptureState.CAPTURED
    elif plugin_at_add is False:
        state = CaptureState.PLUGIN_MISSING_AT_ADD
    elif states == {CaptureState.RULES_MISSING}:
        state = CaptureState.RULES_MISSING
    else:
        state = CaptureState.RULES_PARTIAL
    return Audit(profile.name, state, results, plugin_at_add)


def evaluate_family(view: NetnsView, profile: Profile, family: Family) -> FamilyResult:
    dumps = [d for d in view.dumps if d.family == family]
    if not dumps:
        gone = Missing("dump", f"no {family} rule dump was read")
        return FamilyResult(family, CaptureState.RULES_MISSING, None, (gone,))
    rules = tuple(r for r in view.ip_rules if r.family == family)
    routes = tuple(r for r in view.routes if r.family == family)
    judged = tuple(_judge(d, profile, rules, routes) for d in dumps)
    rank = {CaptureState.CAPTURED: 0, CaptureState.RULES_PARTIAL: 1, CaptureState.RULES_MISSING: 2}
    best = min(judged, key=lambda b: (rank[b.state], -len(b.passed)))
    return FamilyResult(family, best.state, best.backend, best.missing, judged)


def _judge(dump: Dump, profile: Profile, ip_rules: tuple[IpRule, ...], routes: tuple[Route, ...]) -> BackendResult:
    checks: list[tuple[str, bool, str]] = []
    if isinstance(profile.inbound, Redirect):
        checks.extend(_redirect_checks("inbound", dump.ruleset, profile.inbound))
    elif isinstance(profile.inbound, Tproxy):
        checks.extend(_tproxy_checks(dump.ruleset, profile.inbound, ip_rules, routes))
    if profile.outbound is not None:
        checks.extend(_redirect_checks("outbound", dump.ruleset, profile.outbound))
        checks.extend(_exemption_checks(dump.ruleset, profile))
    passed = tuple(name for name, ok, _ in checks if ok)
    missing = tuple(Missing(name, detail) for name, ok, detail in checks if not ok)
    if not missing:
        state = CaptureState.CAPTURED
    elif not _RULE_CHECKS.intersection(passed):
        state = CaptureState.RULES_MISSING
    else:
        state = CaptureState.RULES_PARTIAL
    return BackendResult(dump.backend, state, missing, passed)


def _walk(table: Table, start: str) -> Iterator[Rule]:
    """The rules traffic entering `start` can meet, in order, descending into user chains it jumps to.

    Match conditions are not evaluated (a rule is "reachable" if some packet could hit it); each chain is entered
    once, so a loop in the input cannot make this run forever.
    """
    seen = {start}
    stack: list[Iterator[Rule]] = [iter(table.chain_rules(start))]
    while stack:
        rule = next(stack[-1], None)
        if rule is None:
            stack.pop()
            continue
        yield rule
        if rule.target in table.chains and rule.target not in seen:
            seen.add(rule.target)
            stack.append(iter(table.chain_rules(rule.target)))


def _reaches(table: Table, start: str, chain: str) -> bool:
    return any(rule.target == chain for rule in _walk(table, start))


def _first_port(value: str | None) -> int | None:
    """ "4140" or "4140-4140" (a range prints its first port first) -> 4140."""
    if value is None:
        return None
    head = value.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _is_redirect(rule: Rule, port: int) -> bool:
    return rule.target == "REDIRECT" and _first_port(rule.target_option("--to-ports", "--to-port")) == port


def _redirect_checks(side: str, ruleset: Ruleset, spec: Redirect) -> list[tuple[str, bool, str]]:
    table = ruleset.table(spec.table)
    if spec.chain not in table.chains:
        redirect = (f"{side}-redirect", False, f"{spec.table} chain {spec.chain} does not exist")
    else:
        ok = any(_is_redirect(rule, spec.port) for rule in _walk(table, spec.chain))
        redirect = (f"{side}-redirect", ok, f"{spec.table} {spec.chain} has no REDIRECT to port {spec.port}")
    jump = (
        f"{side}-jump",
        spec.chain in table.chains and _reaches(table, spec.hook, spec.chain),
        f"{spec.table} {spec.hook} does not jump to {spec.chain}",
    )
    return [jump, redirect]


def _owner_matches(rule: Rule, profile: Profile) -> bool:
    def has(option: str, wanted: int | None) -> bool:
        if wanted is None:
            return False
        value = rule.match(option)
        if value is None:
            return False
        low, _, high = value.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            return False
        return int(low) <= wanted <= int(high or low)

    return has("--uid-owner", profile.proxy_uid) or has("--gid-owner", profile.proxy_gid)


def _exemption_checks(ruleset: Ruleset, profile: Profile) -> list[tuple[str, bool, str]]:
    """The outbound chain must RETURN the proxy's own traffic (and loopback, when asked) before it redirects."""
    spec = profile.outbound
    assert spec is not None
    table = ruleset.table(spec.table)
    owner_seen = loopback_seen = False
    for rule in _walk(table, spec.chain):
        if _is_redirect(rule, spec.port):
            break
        if rule.target != "RETURN":
            continue
        if _owner_matches(rule, profile):
            owner_seen = True
        if rule.match("-o", "--out-interface") == "lo" and rule.match("-d", "--destination", "-s", "--source") is None:
            loopback_seen = True
    checks: list[tuple[str, bool, str]] = []
    if profile.proxy_uid is not None or profile.proxy_gid is not None:
        who = " or ".join(
            f"{kind} {value}"
            for kind, value in (("uid", profile.proxy_uid), ("gid", profile.proxy_gid))
            if value is not None
        )
        detail = f"{spec.table} {spec.chain} has no RETURN for the proxy's {who} before its redirect"
        checks.append(("owner-return", owner_seen, detail))
    if profile.loopback_return:
        checks.append(("loopback-return", loopback_seen, f"{spec.table} {spec.chain} has no RETURN for -o lo"))
    return checks


def _mark(value: str | None) -> tuple[int, int] | None:
    """ "0x539/0xffffffff", "1337" -> (value, mask)."""
    if value is None:
        return None
    head, _, mask = value.partition("/")
    try:
        return int(head, 0), int(mask, 0) if mask else 0xFFFFFFFF
    except ValueError:
        return None


def _tproxy_checks(
    ruleset: Ruleset, spec: Tproxy, ip_rules: tuple[IpRule, ...], routes: tuple[Route, ...]
) -> list[tuple[str, bool, str]]:
    table = ruleset.table(spec.table)
    checks: list[tuple[str, bool, str]] = [
        (
            "inbound-jump",
            spec.chain in table.chains and _reaches(table, spec.hook, spec.chain),
            f"{spec.table} {spec.hook} does not jump to {spec.chain}",
        )
    ]

    def is_tproxy(rule: Rule) -> bool:
        mark = _mark(rule.target_option("--tproxy-mark"))
        port = _first_port(rule.target_option("--on-port"))
        return rule.target == "TPROXY" and port == spec.port and mark is not None and _same_mark(mark, spec.mark)

    if spec.chain not in table.chains:
        checks.append(("inbound-redirect", False, f"{spec.table} chain {spec.chain} does not exist"))
    else:
        ok = any(is_tproxy(rule) for rule in _walk(table, spec.chain))
        detail = f"{spec.table} {spec.chain} has no TPROXY to port {spec.port} with mark {spec.mark:#x}"
        checks.append(("inbound-redirect", ok, detail))
    if spec.mark_chain is not None:
        marks = (
            spec.mark_chain in table.chains
            and _reaches(table, spec.hook, spec.mark_chain)
            and any(
                rule.target == "MARK"
                and (m := _mark(rule.target_option("--set-xmark", "--set-mark"))) is not None
                and _same_mark(m, spec.mark)
                for rule in _walk(table, spec.mark_chain)
            )
        )
        detail = f"{spec.table} {spec.mark_chain} (reached from {spec.hook}) does not MARK {spec.mark:#x}"
        checks.append(("mark", marks, detail))
    fwmark = any(
        r.action == "lookup"
        and r.table == spec.route_table
        and r.fwmark is not None
        and _same_mark((r.fwmark, r.fwmask), spec.mark)
        for r in ip_rules
    )
    checks.append(("fwmark-rule", fwmark, f"no ip rule 'fwmark {spec.mark:#x} lookup {spec.route_table}'"))
    local = any(r.table == spec.route_table and r.type == "local" and r.dst_len == 0 and r.dev == "lo" for r in routes)
    checks.append(("local-route", local, f"no route 'local default dev lo table {spec.route_table}'"))
    return checks


def _same_mark(mark: tuple[int, int], wanted: int) -> bool:
    """A (value, mask) pair selects `wanted` when the mask covers every bit of it and the masked values agree."""
    value, mask = mark
    return mask != 0 and value & mask == wanted & mask and wanted & ~mask & 0xFFFFFFFF == 0

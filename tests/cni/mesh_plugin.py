"""A chained CNI plugin that plays the part of a service mesh's CNI plugin (linkerd-cni, istio-cni) in the lab.

The lab installs this file as an executable (with the test interpreter as its `#!` line) into the runtime's CNI bin
dir under the type name `nodemeta-test-mesh`. On ADD it installs traffic-capture rules in the pod's network namespace
(`CNI_NETNS`) and passes the previous plugin's result through unchanged, as a chained plugin must; DEL, CHECK and
STATUS succeed without doing anything; VERSION lists the versions it speaks.

Network config keys (beside the standard cniVersion/name/type/prevResult):
  "mode": "redirect" (default): the Linkerd layout in the nat table (PROXY_INIT_REDIRECT -> REDIRECT 4143 from
          PREROUTING; PROXY_INIT_OUTPUT with RETURN for the proxy uid 2102 and for lo, then REDIRECT 4140 from OUTPUT);
          "tproxy": mangle-table TPROXY to port 15001 with mark 0x539, `ip rule fwmark 0x539 lookup 133` and
          `local default dev lo table 133`.
  "inboundPort", "outboundPort", "proxyUid": override the redirect mode's numbers.
  "ipv6": also install the rules with ip6tables (default false).

Rules are installed with iptables-restore --noflush (one atomic batch per family) through nsenter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

SUPPORTED = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def _redirect_rules(conf: dict[str, Any]) -> str:
    inbound = int(conf.get("inboundPort", 4143))
    outbound = int(conf.get("outboundPort", 4140))
    uid = int(conf.get("proxyUid", 2102))
    return "\n".join(
        [
            "*nat",
            ":PROXY_INIT_REDIRECT - [0:0]",
            ":PROXY_INIT_OUTPUT - [0:0]",
            f"-A PROXY_INIT_REDIRECT -p tcp -j REDIRECT --to-ports {inbound}",
            "-A PREROUTING -j PROXY_INIT_REDIRECT",
            f"-A PROXY_INIT_OUTPUT -m owner --uid-owner {uid} -j RETURN",
            "-A PROXY_INIT_OUTPUT -o lo -j RETURN",
            f"-A PROXY_INIT_OUTPUT -p tcp -j REDIRECT --to-ports {outbound}",
            "-A OUTPUT -j PROXY_INIT_OUTPUT",
            "COMMIT",
            "",
        ]
    )


def _tproxy_rules() -> str:
    return "\n".join(
        [
            "*mangle",
            ":PROXY_TPROXY - [0:0]",
            "-A PROXY_TPROXY -p tcp -j TPROXY --on-port 15001 --on-ip 0.0.0.0 --tproxy-mark 0x539/0xffffffff",
            "-A PREROUTING -j PROXY_TPROXY",
            "COMMIT",
            "",
        ]
    )


def _in_netns(netns: str, argv: list[str], stdin: str = "") -> None:
    subprocess.run(["nsenter", f"--net={netns}", *argv], input=stdin, text=True, check=True, capture_output=True)


def _add(conf: dict[str, Any], netns: str) -> None:
    mode = conf.get("mode", "redirect")
    families = [("iptables-restore", "-4")] + ([("ip6tables-restore", "-6")] if conf.get("ipv6") else [])
    for restore, family in families:
        rules = _tproxy_rules() if mode == "tproxy" else _redirect_rules(conf)
        if mode == "tproxy" and family == "-6":
            rules = rules.replace("--on-ip 0.0.0.0", "--on-ip ::")
        _in_netns(netns, [restore, "--noflush"], rules)
        if mode == "tproxy":
            _in_netns(netns, ["ip", family, "rule", "add", "fwmark", "0x539", "lookup", "133"])
            _in_netns(netns, ["ip", family, "route", "add", "local", "default", "dev", "lo", "table", "133"])


def main() -> int:
    command = os.environ.get("CNI_COMMAND", "")
    raw = sys.stdin.read() if command != "VERSION" else ""
    conf: dict[str, Any] = json.loads(raw) if raw.strip() else {}
    version = str(conf.get("cniVersion", "1.0.0"))
    if command == "VERSION":
        print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": SUPPORTED}))
        return 0
    if command == "ADD":
        try:
            _add(conf, os.environ["CNI_NETNS"])
        except (KeyError, subprocess.CalledProcessError) as err:
            detail = err.stderr if isinstance(err, subprocess.CalledProcessError) else f"missing {err}"
            print(json.dumps({"cniVersion": version, "code": 999, "msg": "capture rules not installed",
                              "details": str(detail)}))  # fmt: skip
            return 1
        result = dict(conf.get("prevResult") or {})
        result["cniVersion"] = version
        print(json.dumps(result))
        return 0
    # DEL, CHECK, STATUS (and GC): nothing to undo; the namespace goes away with its rules.
    return 0


if __name__ == "__main__":
    sys.exit(main())

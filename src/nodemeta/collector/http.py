"""The collector's plain-HTTP side: health probes on one listener, Prometheus metrics on another.

Two listeners, as controller-runtime serves the Go collector (`--health-probe-bind-address` and
`--metrics-bind-address`), so existing probes, NetworkPolicies and ServiceMonitors keep pointing at the right port:

* `/healthz`: 200 while the process runs (liveness: a stuck informer is not fixed by a restart loop);
* `/readyz`: 200 only once the informers of the Go collector's kinds have their first full list cached and the
  gRPC server serves, and 503 again while shutting down (the body says what it waits for). The Go collector answers
  200 at once, so a subscriber routed to it early gets a partial initial sync; here a Service sends no traffic to a
  collector that could not yet answer correctly;
* `/metrics`: the Prometheus text exposition.
"""

from __future__ import annotations

from nodemeta.serving import Readiness, TcpServer, metrics_app, probe_app

__all__ = ["HttpServer", "Readiness", "metrics_app", "probe_app"]

# One aiohttp application per listener (`nodemeta.serving`, shared with the agent and the CNI guard).
HttpServer = TcpServer

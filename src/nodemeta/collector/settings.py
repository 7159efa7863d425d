"""The collector's settings: listen addresses, TLS files and shutdown timing, each default with its reason.

Settings are frozen and keyword-only, built once by the command line (or a test) and passed down explicitly. The
defaults are the Go k8s-metacollector's, so its Helm chart, probes and ServiceMonitor keep working unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nodemeta.addresses import BindAddress
from nodemeta.kube.settings import ClientSettings, ReflectorSettings

__all__ = ["BindAddress", "CollectorSettings", "SettingsError", "TLSFiles"]


class SettingsError(ValueError):
    """A setting is unusable; the message says which and why, for the operator."""


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """The gRPC server's certificate chain and private key (PEM files, read when the server is built)."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorSettings:
    """How the collector serves. The Broker's own limits live in `BrokerSettings` beside it."""

    # gRPC (both metadata.Metadata and nodemeta.v1.NodeMetadata). The Go collector's default port; the Falco
    # chart points the k8smeta plugin at it.
    broker_address: BindAddress = field(default_factory=lambda: BindAddress.parse(":45000"))
    # Prometheus /metrics on its own listener, as controller-runtime serves it; None disables it (the Go flag's
    # value "0").
    metrics_address: BindAddress | None = field(default_factory=lambda: BindAddress.parse(":8080"))
    # /healthz and /readyz; the Go collector's manifests probe this port.
    probe_address: BindAddress = field(default_factory=lambda: BindAddress.parse(":8081"))
    # Server-side TLS for gRPC; None serves plaintext HTTP/2, like the Go collector without its cert flags.
    tls: TLSFiles | None = None
    # After the broker ends every stream (UNAVAILABLE), how long the gRPC server waits for handlers to finish
    # before cancelling them. Handlers end at once when the broker closes, so this only bounds a stuck one; 5 s
    # is half of the manifests' terminationGracePeriodSeconds (10 s), leaving time for the listeners to close.
    shutdown_grace: float = 5.0
    # How often the collector runs a full collection of what it allocated since the last one and freezes the
    # survivors out of the cyclic GC's reach (`nodemeta.collector.heap`; there are no other full collections once
    # the caches have synced). Its pause grows with what was allocated meanwhile: 1.04 s for the minute in which
    # 5,000 subscribers resynced (bench/collector.py), tens of ms for 10 s of 200 pod changes/s. 10 s keeps each
    # one short, even while thousands of subscribers join. 0 collects and freezes only once, after the sync.
    heap_freeze_interval: float = 10.0
    # Whether to freeze at all. The heap and the GC thresholds belong to the whole process: the command line
    # freezes (a collector process holds nothing else), a program that embeds a Collector (a test, a demo) may
    # want its own collections left alone and turn this off.
    freeze_heap: bool = True
    # Log the kinds still unsynced this often while waiting (an API server that refuses a list, or RBAC that
    # lacks a verb, shows up here and in /readyz rather than as silence). 30 s is the e2e tests' start budget.
    sync_report_interval: float = 30.0
    # The API connection and the list/watch loops (client-go's numbers; tests pass faster backoffs).
    client: ClientSettings = field(default_factory=ClientSettings)
    reflector: ReflectorSettings = field(default_factory=ReflectorSettings)

    def __post_init__(self) -> None:
        if self.shutdown_grace < 0:
            raise SettingsError("shutdown_grace must not be negative")
        if self.heap_freeze_interval < 0:
            raise SettingsError("heap_freeze_interval must not be negative")
        if self.sync_report_interval <= 0:
            raise SettingsError("sync_report_interval must be positive")

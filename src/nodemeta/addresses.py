"""Listen addresses as the Go collector's flags write them (`:PORT`, `HOST:PORT`, `[IPv6]:PORT`): pure parsing,
shared by every command that listens."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["AddressError", "BindAddress"]


class AddressError(ValueError):
    """A listen address that cannot be used; the message quotes it and says why."""


@dataclass(frozen=True, slots=True)
class BindAddress:
    """Where to listen: `:PORT` (every interface), `HOST:PORT` or `[IPv6]:PORT`. Port 0 asks the system for a free
    port (tests use it)."""

    host: str
    port: int
    # As given, for logs (the Go collector logs the flag value, e.g. ":45000").
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> BindAddress:
        host, sep, port_text = text.strip().rpartition(":")
        if not sep:
            raise AddressError(f"bind address {text!r} must be :PORT, HOST:PORT or [IPv6]:PORT")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            try:
                ipaddress.IPv6Address(host)
            except ValueError as err:
                raise AddressError(f"bind address {text!r}: {host!r} is not an IPv6 address") from err
        elif ":" in host:
            raise AddressError(f"bind address {text!r}: write IPv6 hosts in brackets, e.g. [::1]:8080")
        try:
            port = int(port_text)
        except ValueError:
            raise AddressError(f"bind address {text!r}: port {port_text!r} is not a number") from None
        if not 0 <= port <= 65535:
            raise AddressError(f"bind address {text!r}: port must be 0-65535")
        return cls(host or "0.0.0.0", port, text)

    @property
    def target(self) -> str:
        """`host:port` as gRPC and logs write it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.text or self.target

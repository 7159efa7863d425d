"""What the container runtime says it loaded: containerd's verbose CRI `Status` info, decoded. Pure, no I/O.

containerd reports its CNI view in two info keys: `cniconfig` (JSON of go-cni's config: `PluginConfDir`,
`PluginMaxConfNum`, `Networks[].Config.{Name, CNIVersion, Plugins[].Network.type, Source}`) and `lastCNILoadStatus`
("OK" or the error of the last reload). `crictl info` prints the same keys with the JSON already decoded. The disk
and this view differ when containerd missed a reload (it ignores CREATE events, so a file moved in can stay
unloaded) or when the last reload failed (go-cni then keeps no network at all).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from nodemeta.cni.conf import LOOPBACK_NETWORK

__all__ = ["LoadedNetwork", "LoadedView", "from_crictl_info", "from_status_info"]


@dataclass(frozen=True, slots=True)
class LoadedNetwork:
    name: str
    cni_version: str
    types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LoadedView:
    # The configured networks in load order, containerd's own loopback network left out.
    networks: tuple[LoadedNetwork, ...] = ()
    # "OK", or the error of the last load; "" when the runtime did not say.
    last_load_status: str = ""
    conf_dir: str = ""
    # Why the runtime's report could not be decoded ("" when it could): nothing is concluded from it then.
    error: str = ""

    @property
    def load_failed(self) -> bool:
        return bool(self.last_load_status) and self.last_load_status != "OK"


def _maybe_json(value: object) -> object:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _text(value: object) -> str:
    return value.encode("utf-8", "replace").decode("utf-8") if isinstance(value, str) else ""


def _networks(config: object) -> tuple[LoadedNetwork, ...]:
    if not isinstance(config, dict):
        raise ValueError("cniconfig is not a JSON object")
    raw = config.get("Networks") or []
    if not isinstance(raw, list):
        raise ValueError("cniconfig.Networks is not a list")
    out: list[LoadedNetwork] = []
    for item in raw:
        conf = item.get("Config") if isinstance(item, dict) else None
        if not isinstance(conf, dict):
            raise ValueError("a cniconfig network has no Config object")
        plugins = conf.get("Plugins") or []
        types: list[str] = []
        for plugin in plugins if isinstance(plugins, list) else []:
            network = plugin.get("Network") if isinstance(plugin, dict) else None
            if isinstance(network, dict):
                types.append(_text(network.get("type")))
        name = _text(conf.get("Name"))
        if name == LOOPBACK_NETWORK:
            continue
        out.append(LoadedNetwork(name, _text(conf.get("CNIVersion")), tuple(types)))
    return tuple(out)


def _view(cniconfig: object, status: object) -> LoadedView:
    status_text = _text(_maybe_json(status)) if status is not None else ""
    if cniconfig is None:
        return LoadedView(last_load_status=status_text, error="the runtime reported no cniconfig")
    config = _maybe_json(cniconfig)
    try:
        networks = _networks(config)
    except ValueError as err:
        return LoadedView(last_load_status=status_text, error=str(err))
    conf_dir = _text(config.get("PluginConfDir")) if isinstance(config, dict) else ""
    return LoadedView(networks, status_text, conf_dir)


def from_status_info(info: Mapping[str, str]) -> LoadedView:
    """From CRI `Status(verbose=true)` info (values are JSON text, or plain text for the load status)."""
    return _view(info.get("cniconfig"), info.get("lastCNILoadStatus"))


def from_crictl_info(data: bytes) -> LoadedView:
    """From `crictl info` output (one JSON document; newer crictl nests the keys under "info")."""
    try:
        doc = json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError) as err:
        return LoadedView(error=f"not JSON: {err}")
    if not isinstance(doc, dict):
        return LoadedView(error="not a JSON object")
    if "cniconfig" not in doc and isinstance(doc.get("info"), dict):
        doc = doc["info"]
    return _view(doc.get("cniconfig"), doc.get("lastCNILoadStatus"))

"""Which pods must have their traffic captured, and by which capture profile. Pure: a pod description in, a verdict out.

A pod is judged from what its spec says, the way the meshes' own repair controllers judge it:

* Linkerd: the pod runs a `linkerd-proxy` container (an ordinary container, or a native sidecar among the init
  containers) and has no `linkerd-init` init container. With `linkerd-init`, the rules come from that init
  container and the pod is not the CNI plugin's responsibility; without it, only linkerd-cni installs them.
* Istio: the pod carries `sidecar.istio.io/status` (the injector's record that a sidecar was injected) and its
  `sidecar.istio.io/interceptionMode` is not `NONE`. `TPROXY` selects the TPROXY profile, anything else REDIRECT.
* Selectors: a configured label/annotation selector names a profile, for meshes or in-house proxies the two
  built-in rules do not know. The first matching selector wins, and selectors are tried before the built-in rules.

The profile names refer to `nodemeta.cni.capture.PROFILES` (or a caller's own registry).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "ISTIO_INTERCEPTION_ANNOTATION",
    "ISTIO_STATUS_ANNOTATION",
    "Expectation",
    "PodDescription",
    "PolicySettings",
    "Selector",
    "expected_capture",
]

ISTIO_STATUS_ANNOTATION = "sidecar.istio.io/status"
ISTIO_INTERCEPTION_ANNOTATION = "sidecar.istio.io/interceptionMode"


@dataclass(frozen=True, slots=True, kw_only=True)
class PodDescription:
    """The parts of a pod the policy reads."""

    name: str
    namespace: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    containers: tuple[str, ...] = ()
    init_containers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Selector:
    """Pods whose labels and annotations all match are captured with `profile`.

    A value of None means "the key is present, with any value".
    """

    profile: str
    labels: Mapping[str, str | None] = field(default_factory=dict)
    annotations: Mapping[str, str | None] = field(default_factory=dict)

    def matches(self, pod: PodDescription) -> bool:
        if not self.labels and not self.annotations:
            # An empty selector would select every pod on the node; that is never what a mesh means.
            return False
        return _subset(self.labels, pod.labels) and _subset(self.annotations, pod.annotations)


def _subset(wanted: Mapping[str, str | None], actual: Mapping[str, str]) -> bool:
    return all(key in actual and (value is None or actual[key] == value) for key, value in wanted.items())


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySettings:
    """Which rules apply, and which profile each selects. Both meshes are on: a pod of a mesh that is not
    installed simply never matches."""

    linkerd: bool = True
    istio: bool = True
    linkerd_profile: str = "linkerd"
    istio_profile: str = "istio"
    istio_tproxy_profile: str = "istio-tproxy"
    linkerd_proxy_container: str = "linkerd-proxy"
    linkerd_init_container: str = "linkerd-init"
    selectors: tuple[Selector, ...] = ()


@dataclass(frozen=True, slots=True)
class Expectation:
    """A pod that must be captured: with which profile, and why (for events and logs)."""

    profile: str
    reason: str


def expected_capture(pod: PodDescription, settings: PolicySettings | None = None) -> Expectation | None:
    """The capture `pod` must have, or None when it need not be captured."""
    settings = settings or PolicySettings()
    for selector in settings.selectors:
        if selector.matches(pod):
            return Expectation(selector.profile, f"matches the selector for profile {selector.profile}")
    if settings.linkerd:
        proxy = settings.linkerd_proxy_container
        if (proxy in pod.containers or proxy in pod.init_containers) and (
            settings.linkerd_init_container not in pod.init_containers
        ):
            return Expectation(
                settings.linkerd_profile,
                f"runs {proxy} without a {settings.linkerd_init_container} init container (capture by linkerd-cni)",
            )
    if settings.istio and ISTIO_STATUS_ANNOTATION in pod.annotations:
        mode = pod.annotations.get(ISTIO_INTERCEPTION_ANNOTATION, "REDIRECT").strip().upper()
        if mode == "NONE":
            return None
        if mode == "TPROXY":
            return Expectation(settings.istio_tproxy_profile, "Istio sidecar in TPROXY interception mode")
        return Expectation(settings.istio_profile, "Istio sidecar in REDIRECT interception mode")
    return None

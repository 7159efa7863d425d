"""Who must be captured: the Linkerd and Istio rules as their repair controllers apply them, and selectors."""

from __future__ import annotations

import pytest

from nodemeta.cni.policy import PodDescription, PolicySettings, Selector, expected_capture


def pod(
    *,
    containers: tuple[str, ...] = ("app",),
    init: tuple[str, ...] = (),
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> PodDescription:
    return PodDescription(
        name="web-0",
        namespace="shop",
        uid="8d3c",
        labels=labels or {},
        annotations=annotations or {},
        containers=containers,
        init_containers=init,
    )


ISTIO_STATUS = {"sidecar.istio.io/status": '{"initContainers":["istio-validation"],"containers":["istio-proxy"]}'}


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        (pod(), None),
        (pod(containers=("app", "linkerd-proxy")), "linkerd"),
        # Native sidecar: the proxy is an init container with restartPolicy Always.
        (pod(containers=("app",), init=("linkerd-proxy",)), "linkerd"),
        # proxy-init installs the rules itself: not the CNI plugin's pod.
        (pod(containers=("app", "linkerd-proxy"), init=("linkerd-init",)), None),
        (pod(init=("linkerd-init",)), None),
        (pod(containers=("app", "istio-proxy"), annotations=ISTIO_STATUS), "istio"),
        (pod(annotations={**ISTIO_STATUS, "sidecar.istio.io/interceptionMode": "REDIRECT"}), "istio"),
        (pod(annotations={**ISTIO_STATUS, "sidecar.istio.io/interceptionMode": "TPROXY"}), "istio-tproxy"),
        (pod(annotations={**ISTIO_STATUS, "sidecar.istio.io/interceptionMode": "NONE"}), None),
        # The mode without the status annotation: no sidecar was injected.
        (pod(annotations={"sidecar.istio.io/interceptionMode": "TPROXY"}), None),
    ],
)
def test_the_mesh_rules(description: PodDescription, expected: str | None) -> None:
    found = expected_capture(description)
    assert (found.profile if found else None) == expected


def test_selectors_come_first_and_need_every_key() -> None:
    settings = PolicySettings(
        selectors=(
            Selector(profile="in-house", labels={"proxy": "envoy"}, annotations={"team": None}),
            Selector(profile="linkerd", labels={"mesh": "linkerd"}),
            Selector(profile="everything"),  # empty: matches nothing
        )
    )
    both = pod(labels={"proxy": "envoy"}, annotations={"team": "payments", **ISTIO_STATUS})
    assert expected_capture(both, settings).profile == "in-house"  # type: ignore[union-attr]
    only_label = pod(labels={"proxy": "envoy"}, annotations=ISTIO_STATUS)
    assert expected_capture(only_label, settings).profile == "istio"  # type: ignore[union-attr]
    assert expected_capture(pod(labels={"mesh": "linkerd"}), settings).profile == "linkerd"  # type: ignore[union-attr]
    assert expected_capture(pod(labels={"mesh": "istio"}), settings) is None


def test_rules_can_be_switched_off_and_renamed() -> None:
    meshed = pod(containers=("app", "linkerd-proxy"), annotations=ISTIO_STATUS)
    assert expected_capture(meshed).profile == "linkerd"  # type: ignore[union-attr]
    assert expected_capture(meshed, PolicySettings(linkerd=False)).profile == "istio"  # type: ignore[union-attr]
    assert expected_capture(meshed, PolicySettings(linkerd=False, istio=False)) is None
    renamed = PolicySettings(linkerd_profile="linkerd-custom-ports")
    found = expected_capture(meshed, renamed)
    assert found is not None and found.profile == "linkerd-custom-ports"
    assert "linkerd-init" in found.reason

"""Tests for the three PATCH flavours of the simulator.

Expected strategic-merge results were taken from ``kubectl patch --local --type strategic`` 1.32, which runs the
same apimachinery code as kube-apiserver 1.32.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodemeta.sim.patch import PatchError, json_patch, merge_patch, strategic_merge_patch

# --- RFC 7386 merge patch ----------------------------------------------------------------------------------------

RFC7386_APPENDIX_A = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC7386_APPENDIX_A)
def test_merge_patch_rfc7386_appendix_a(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


def test_merge_patch_keeps_key_order_and_does_not_alias_inputs() -> None:
    target = {"a": {"x": [1]}, "b": 1}
    patch = {"c": {"d": [2]}, "b": 2}
    result = merge_patch(target, patch)
    assert list(result) == ["a", "b", "c"]
    result["a"]["x"].append(9)
    result["c"]["d"].append(9)
    assert target == {"a": {"x": [1]}, "b": 1}
    assert patch == {"c": {"d": [2]}, "b": 2}


def naive_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2 pseudo-code, written independently of the module under test."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = naive_merge_patch(result.get(key), value)
    return result


KEYS = st.sampled_from(["a", "b", "c", "d", "spec", "metadata"])
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=3)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(target=JSON_VALUES, patch=JSON_VALUES)
def test_merge_patch_matches_naive_implementation_and_never_mutates(target: Any, patch: Any) -> None:
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    result = merge_patch(target, patch)
    assert target == target_before
    assert patch == patch_before
    assert result == naive_merge_patch(copy.deepcopy(target), copy.deepcopy(patch))


# --- RFC 6902 JSON patch -----------------------------------------------------------------------------------------


def test_json_patch_operations() -> None:
    target = {"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2, 3]}}
    ops = [
        {"op": "test", "path": "/metadata/labels/a", "value": "1"},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
        {"op": "remove", "path": "/metadata/labels/a"},
        {"op": "replace", "path": "/spec/list/0", "value": 10},
        {"op": "add", "path": "/spec/list/-", "value": 4},
        {"op": "move", "from": "/spec/list/1", "path": "/spec/moved"},
        {"op": "copy", "from": "/metadata/labels", "path": "/spec/labels"},
        {"op": "add", "path": "/metadata/labels/c~1d", "value": "slash"},
    ]
    assert json_patch(target, ops) == {
        "metadata": {"labels": {"b": "2", "c/d": "slash"}},
        "spec": {"list": [10, 3, 4], "moved": 2, "labels": {"b": "2"}},
    }
    assert target == {"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2, 3]}}


def test_json_patch_does_not_alias_values_from_the_ops() -> None:
    ops = [{"op": "add", "path": "/a", "value": {"nested": [1]}}]
    result = json_patch({}, ops)
    result["a"]["nested"].append(2)
    assert ops == [{"op": "add", "path": "/a", "value": {"nested": [1]}}]


@pytest.mark.parametrize(
    "ops",
    [
        {"op": "add", "path": "/a", "value": 1},
        "not a list",
        None,
        [{"op": "frobnicate", "path": "/a"}],
        [{"path": "/a", "value": 1}],
        [{"op": "add", "path": "/a"}],
        [{"op": "move", "path": "/a"}],
        [{"op": "add", "path": "no-leading-slash", "value": 1}],
        [1],
    ],
)
def test_json_patch_malformed_is_bad_request(ops: Any) -> None:
    with pytest.raises(PatchError) as info:
        json_patch({"a": 1}, ops)
    assert info.value.invalid is False


def test_json_patch_that_is_not_a_list_reads_like_the_apiserver() -> None:
    with pytest.raises(PatchError, match=r"cannot unmarshal object into Go value of type jsonpatch\.Patch"):
        json_patch({}, {"op": "add"})


@pytest.mark.parametrize(
    "op",
    [
        {"op": "test", "path": "/a", "value": 2},
        {"op": "test", "path": "/missing", "value": 1},
        {"op": "remove", "path": "/missing"},
        {"op": "replace", "path": "/missing", "value": 1},
        {"op": "add", "path": "/missing/child", "value": 1},
        {"op": "add", "path": "/list/9", "value": 1},
        {"op": "remove", "path": "/list/5"},
        {"op": "move", "from": "/missing", "path": "/b"},
        {"op": "copy", "from": "/missing", "path": "/b"},
        {"op": "add", "path": "/a/b", "value": 1},
    ],
)
def test_json_patch_failing_against_the_object_is_invalid(op: dict[str, Any]) -> None:
    target = {"a": 1, "list": [1]}
    with pytest.raises(PatchError) as info:
        json_patch(target, [op])
    assert info.value.invalid is True
    assert target == {"a": 1, "list": [1]}


# --- strategic merge patch ---------------------------------------------------------------------------------------


def pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "labels": {"app": "web"},
            "finalizers": ["a", "b"],
            "ownerReferences": [{"uid": "u1", "name": "rs1"}, {"uid": "u2", "name": "rs2"}],
        },
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "nginx:1.26",
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                },
                {"name": "side", "image": "busybox"},
            ],
            "volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "configMap": {"name": "cm"}}],
            "tolerations": [{"key": "t", "operator": "Exists"}],
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}],
            "containerStatuses": [{"name": "web", "ready": False}],
        },
    }


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.26", "ports": [{"containerPort": 80}]},
                        {"name": "side", "image": "busybox"},
                    ]
                },
            },
        },
    }


def smp(target: dict[str, Any], patch: Any, kind: str = "Pod") -> dict[str, Any]:
    """Apply and check that neither input was touched."""
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    result = strategic_merge_patch(target, patch, kind)
    assert target == target_before
    assert patch == patch_before
    return result


def names(items: list[dict[str, Any]], key: str = "name") -> list[Any]:
    return [item[key] for item in items]


def test_containers_merge_by_name_and_keep_other_fields() -> None:
    result = smp(pod(), {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}})
    web, side = result["spec"]["containers"]
    assert web == {**pod()["spec"]["containers"][0], "image": "nginx:1.27"}
    assert side == {"name": "side", "image": "busybox"}


def test_kubectl_apply_patch_updates_the_image_in_place() -> None:
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "web"}],
                    "containers": [{"image": "nginx:1.27", "name": "web"}],
                }
            }
        },
    }
    result = smp(deployment(), patch, "Deployment")
    assert result["metadata"]["annotations"] == {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}
    assert result["spec"]["template"]["spec"] == {
        "containers": [
            {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "busybox"},
        ]
    }


def test_new_entries_go_first_without_set_element_order_like_the_apiserver() -> None:
    result = smp(pod(), {"spec": {"containers": [{"name": "new", "image": "redis"}]}})
    assert names(result["spec"]["containers"]) == ["new", "web", "side"]


def test_patch_order_wins_for_entries_it_names() -> None:
    target = {"spec": {"containers": [{"name": "1"}, {"name": "2", "image": "b"}, {"name": "3"}]}}
    result = smp(target, {"spec": {"containers": [{"name": "3", "image": "c"}, {"name": "1", "image": "a"}]}})
    assert result["spec"]["containers"] == [
        {"name": "2", "image": "b"},
        {"name": "3", "image": "c"},
        {"name": "1", "image": "a"},
    ]


def test_env_merge_and_delete_directive() -> None:
    patch = {
        "spec": {
            "containers": [{"name": "web", "env": [{"name": "B", "$patch": "delete"}, {"name": "C", "value": "3"}]}]
        }
    }
    web = smp(pod(), patch)["spec"]["containers"][0]
    assert web["env"] == [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}]
    assert web["image"] == "nginx:1.26"


def test_null_deletes_a_field_inside_a_merged_entry() -> None:
    patch = {"spec": {"containers": [{"name": "web", "env": [{"name": "A", "value": None}], "ports": None}]}}
    web = smp(pod(), patch)["spec"]["containers"][0]
    assert web["env"] == [{"name": "A"}, {"name": "B", "value": "2"}]
    assert "ports" not in web


def test_container_ports_merge_by_container_port() -> None:
    patch = {"spec": {"containers": [{"name": "web", "ports": [{"containerPort": 80, "name": "http"}]}]}}
    web = smp(pod(), patch)["spec"]["containers"][0]
    assert web["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "http"}]


def test_finalizers_merge_as_a_set() -> None:
    result = smp(pod(), {"metadata": {"finalizers": ["b", "c", "c"]}})
    assert result["metadata"]["finalizers"] == ["a", "b", "c"]
    result = smp(pod(), {"metadata": {"finalizers": ["c"]}})
    assert result["metadata"]["finalizers"] == ["c", "a", "b"]


def test_delete_from_primitive_list() -> None:
    result = smp(pod(), {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zzz"]}})
    assert result["metadata"]["finalizers"] == ["b"]
    # A missing list is not created.
    result = smp(pod(), {"spec": {"$deleteFromPrimitiveList/nodeSelector": ["x"]}})
    assert "nodeSelector" not in result["spec"]
    with pytest.raises(PatchError, match="invalid patch format of primitive list"):
        smp(pod(), {"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}})


def test_owner_references_merge_by_uid() -> None:
    patch = {"metadata": {"ownerReferences": [{"uid": "u2", "controller": True}, {"uid": "u1", "$patch": "delete"}]}}
    result = smp(pod(), patch)
    assert result["metadata"]["ownerReferences"] == [{"uid": "u2", "name": "rs2", "controller": True}]


def test_set_element_order_reorders_merged_list() -> None:
    result = smp(pod(), {"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "web"}]}})
    assert names(result["spec"]["containers"]) == ["side", "web"]
    assert result["spec"]["containers"][1] == pod()["spec"]["containers"][0]
    assert "$setElementOrder/containers" not in result["spec"]


def test_set_element_order_keeps_server_only_entries_in_place() -> None:
    target = {"spec": {"containers": [{"name": "a"}, {"name": "x"}, {"name": "b"}]}}
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
            "containers": [{"name": "c", "image": "new"}],
        }
    }
    assert names(smp(target, patch)["spec"]["containers"]) == ["a", "x", "b", "c"]


def test_set_element_order_for_primitive_list() -> None:
    target = {"metadata": {"finalizers": ["a", "b", "c"]}}
    result = smp(target, {"metadata": {"$setElementOrder/finalizers": ["c", "a"]}})
    assert result["metadata"]["finalizers"] == ["b", "c", "a"]


def test_set_element_order_with_delete_and_add_matches_the_apiserver() -> None:
    # kubectl apply after renaming a container: apimachinery's in-place slice edits put "side" first.
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "new"}],
            "containers": [{"name": "new", "image": "n"}, {"name": "web", "$patch": "delete"}],
        }
    }
    assert names(smp(pod(), patch)["spec"]["containers"]) == ["side", "new"]


def test_set_element_order_must_agree_with_the_patch_list() -> None:
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "web"}],
            "containers": [{"name": "web", "image": "x"}, {"name": "side", "image": "y"}],
        }
    }
    with pytest.raises(PatchError) as info:
        smp(pod(), patch)
    assert str(info.value) == (
        "The order in patch list:\n[map[image:x name:web] map[image:y name:side]]\n"
        " doesn't match $setElementOrder list:\n[map[name:side] map[name:web]]\n"
    )
    assert info.value.invalid is False


def test_retain_keys_on_volume_entry() -> None:
    patch = {"spec": {"volumes": [{"name": "w", "$retainKeys": ["name", "secret"], "secret": {"secretName": "s"}}]}}
    volumes = smp(pod(), patch)["spec"]["volumes"]
    assert volumes == [{"name": "v", "emptyDir": {}}, {"name": "w", "secret": {"secretName": "s"}}]


def test_retain_keys_on_deployment_strategy() -> None:
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert smp(deployment(), patch, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_must_cover_the_patch() -> None:
    with pytest.raises(PatchError, match=r"^invalid patch format of retainKeys$"):
        smp(deployment(), {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}, "Deployment")
    with pytest.raises(PatchError, match=r"^invalid patch format of retainKeys$"):
        smp(deployment(), {"spec": {"strategy": {"$retainKeys": "type"}}}, "Deployment")


def test_replace_directive_on_map() -> None:
    result = smp(pod(), {"metadata": {"labels": {"$patch": "replace", "tier": "db"}}})
    assert result["metadata"]["labels"] == {"tier": "db"}


def test_replace_directive_on_list() -> None:
    patch = {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}
    assert smp(pod(), patch)["spec"]["containers"] == [{"name": "only", "image": "x"}]
    assert smp(pod(), {"spec": {"containers": [{"$patch": "replace"}]}})["spec"]["containers"] == []


def test_replace_directive_at_top_level() -> None:
    assert smp(pod(), {"$patch": "replace", "metadata": {"name": "q"}}) == {"metadata": {"name": "q"}}


def test_delete_directive_on_map_empties_it_like_apimachinery() -> None:
    assert smp(pod(), {"metadata": {"labels": {"$patch": "delete"}}})["metadata"]["labels"] == {}


def test_merge_directive_on_map_is_rejected_like_apimachinery() -> None:
    with pytest.raises(PatchError, match="unknown patch type: merge in map"):
        smp(pod(), {"metadata": {"labels": {"$patch": "merge", "tier": "db"}}})


def test_lists_without_strategy_are_replaced() -> None:
    result = smp(pod(), {"spec": {"tolerations": [{"key": "u", "operator": "Exists"}]}})
    assert result["spec"]["tolerations"] == [{"key": "u", "operator": "Exists"}]
    node = {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}
    patched = smp(node, {"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}}, "Node")
    assert patched["spec"]["taints"] == [{"key": "b", "effect": "NoSchedule"}]


def test_new_values_lose_nulls_and_directives() -> None:
    patch = {
        "spec": {
            "affinity": {"nodeAffinity": {"x": None, "required": {"$patch": "delete"}}},
            "containers": [
                {
                    "name": "new",
                    "image": None,
                    "env": [{"name": "X", "$patch": "delete"}, {"name": "Y", "value": "1"}],
                    "$setElementOrder/env": [{"name": "Y"}],
                }
            ],
        }
    }
    result = smp(pod(), patch)
    assert result["spec"]["affinity"] == {"nodeAffinity": {}}
    assert result["spec"]["containers"][0] == {"name": "new", "env": [{"name": "Y", "value": "1"}]}


def test_service_ports_merge_by_port() -> None:
    service = {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}}
    result = smp(service, {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}, "Service")
    assert result["spec"]["ports"] == [{"port": 80, "name": "http"}, {"port": 443, "name": "https", "targetPort": 8443}]
    result = smp(service, {"spec": {"ports": [{"port": 80, "$patch": "delete"}]}}, "Service")
    assert result["spec"]["ports"] == [{"port": 443, "name": "https"}]
    # Go compares merge keys by type too: 80.0 is a float64, not the int64 80.
    result = smp(service, {"spec": {"ports": [{"port": 80.0, "name": "float"}]}}, "Service")
    assert len(result["spec"]["ports"]) == 3


def test_pod_status_conditions_merge_by_type_and_container_statuses_replace() -> None:
    patch = {
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "web", "ready": True}],
        }
    }
    status = smp(pod(), patch)["status"]
    assert status["conditions"] == [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]
    assert status["containerStatuses"] == [{"name": "web", "ready": True}]


def test_node_status_addresses_and_conditions_merge_by_type() -> None:
    node = {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}], "conditions": [{"type": "Ready"}]}}
    patch = {
        "status": {"addresses": [{"type": "Hostname", "address": "n1"}], "conditions": [{"type": "Ready", "x": 1}]}
    }
    status = smp(node, patch, "Node")["status"]
    assert names(status["addresses"], "type") == ["Hostname", "InternalIP"]
    assert status["conditions"] == [{"type": "Ready", "x": 1}]


def test_cronjob_nested_pod_template() -> None:
    cronjob = {
        "spec": {
            "jobTemplate": {
                "metadata": {"finalizers": ["f"]},
                "spec": {"template": {"spec": {"containers": [{"name": "job", "image": "1", "args": ["a"]}]}}},
            }
        }
    }
    patch = {
        "spec": {
            "jobTemplate": {
                "metadata": {"finalizers": ["g"]},
                "spec": {"template": {"spec": {"containers": [{"name": "job", "image": "2"}]}}},
            }
        }
    }
    job_template = smp(cronjob, patch, "CronJob")["spec"]["jobTemplate"]
    assert job_template["spec"]["template"]["spec"]["containers"] == [{"name": "job", "image": "2", "args": ["a"]}]
    assert job_template["metadata"]["finalizers"] == ["g", "f"]


@pytest.mark.parametrize(
    "kind", ["Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "ReplicationController"]
)
def test_workload_pod_templates_and_conditions(kind: str) -> None:
    target = {
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "1", "args": ["x"]}]}}},
        "status": {"conditions": [{"type": "A", "status": "True"}]},
    }
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "2"}]}}},
        "status": {"conditions": [{"type": "B", "status": "True"}]},
    }
    result = smp(target, patch, kind)
    assert result["spec"]["template"]["spec"]["containers"] == [{"name": "c", "image": "2", "args": ["x"]}]
    assert names(result["status"]["conditions"], "type") == ["B", "A"]


def test_pod_template_kind() -> None:
    target = {"template": {"spec": {"containers": [{"name": "c", "image": "1"}]}}}
    result = smp(target, {"template": {"spec": {"containers": [{"name": "d"}]}}}, "PodTemplate")
    assert names(result["template"]["spec"]["containers"]) == ["d", "c"]


def test_unknown_kind_replaces_lists_but_honours_directives() -> None:
    target = {"spec": {"items": [{"name": "a"}], "map": {"a": 1, "b": 2}}, "metadata": {"finalizers": ["x"]}}
    patch = {
        "spec": {"items": [{"name": "b"}], "map": {"$patch": "replace", "c": 3}},
        "metadata": {"finalizers": ["y"]},
    }
    result = smp(target, patch, "Widget")
    assert result == {"spec": {"items": [{"name": "b"}], "map": {"c": 3}}, "metadata": {"finalizers": ["y"]}}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ([1], "invalid JSON document"),
        ("x", "invalid JSON document"),
        (
            {"spec": {"containers": [{"image": "q"}]}},
            "map: map[image:q] does not contain declared merge key: name",
        ),
        (
            {"spec": {"containers": [{"$patch": "delete"}]}},
            "map: map[$patch:delete] does not contain declared merge key: name",
        ),
        ({"spec": {"$patch": "bogus"}}, "unknown patch type: bogus in map: map[$patch:bogus]"),
        (
            {"spec": {"containers": [{"name": "web", "$patch": "foo"}]}},
            "unknown patch type: foo in map: map[$patch:foo name:web]",
        ),
        ({"spec": {"containers": [{"$patch": "merge"}]}}, "merging lists cannot yet be specified in the patch"),
        ({"metadata": {"finalizers": ["x", 1]}}, "list element types are not identical: [[a b] [x 1]]"),
        ({"spec": {"$setElementOrder/containers": "web"}}, "expected a []interface {}, but received a string"),
        ({"spec": {"$setElementOrder/containers": ["web"]}}, "value for key 0 is not a map"),
    ],
)
def test_malformed_strategic_patches(patch: Any, message: str) -> None:
    with pytest.raises(PatchError) as info:
        smp(pod(), patch)
    assert str(info.value) == message
    assert info.value.invalid is False


def test_lists_of_lists_are_unprocessable() -> None:
    with pytest.raises(PatchError, match="lists of lists are not supported") as info:
        smp({"metadata": {"finalizers": [["x"]]}}, {"metadata": {"finalizers": [["y"]]}})
    assert info.value.invalid is True


def test_result_does_not_alias_target_or_patch() -> None:
    target, patch = pod(), {"spec": {"containers": [{"name": "new", "env": [{"name": "E"}]}]}}
    result = strategic_merge_patch(target, patch, "Pod")
    result["spec"]["containers"][0]["env"].append({"name": "F"})
    result["spec"]["containers"][1]["env"].append({"name": "G"})
    result["metadata"]["labels"]["x"] = "y"
    assert target == pod()
    assert patch == {"spec": {"containers": [{"name": "new", "env": [{"name": "E"}]}]}}


PLAIN_SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
PLAIN_VALUES = st.recursive(
    PLAIN_SCALARS,
    lambda inner: st.lists(PLAIN_SCALARS, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)
PLAIN_OBJECTS = st.dictionaries(KEYS, PLAIN_VALUES, max_size=4)


@settings(max_examples=200, deadline=None)
@given(target=PLAIN_OBJECTS, patch=PLAIN_OBJECTS)
def test_unknown_kind_without_directives_is_a_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    assert smp(target, patch, "Widget") == merge_patch(target, patch)


DIRECTIVE_KEYS = st.sampled_from(
    ["name", "image", "containers", "env", "finalizers", "$patch", "$retainKeys", "$setElementOrder/containers"]
)
DIRECTIVE_VALUES = st.recursive(
    SCALARS | st.sampled_from(["delete", "replace", "merge", "web", "side"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(DIRECTIVE_KEYS, inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(patch=st.dictionaries(st.sampled_from(["spec", "metadata", "status"]), DIRECTIVE_VALUES, max_size=3))
def test_random_strategic_patches_only_raise_patch_error_and_never_mutate(patch: dict[str, Any]) -> None:
    patch_before = copy.deepcopy(patch)
    for kind in ("Pod", "Widget"):
        target = pod()
        try:
            result = strategic_merge_patch(target, patch, kind)
        except PatchError:
            pass
        else:
            assert not any(key.startswith("$") for key in _all_keys(result))
        assert target == pod()
        assert patch == patch_before


def _all_keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(key for item in value.values() for key in _all_keys(item))]
    if isinstance(value, list):
        return [key for item in value for key in _all_keys(item)]
    return []

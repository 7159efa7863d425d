from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodemeta.sim.selectors import (
    FieldRequirement,
    FieldSelector,
    LabelSelector,
    Requirement,
    SelectorError,
    selector_from_map,
)

QNAME_RULE = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
    "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
SUBDOMAIN_RULE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def sel(text: str) -> LabelSelector:
    return LabelSelector.parse(text)


def parse_error(text: str) -> str:
    with pytest.raises(SelectorError) as info:
        LabelSelector.parse(text)
    return str(info.value)


# --- label selectors: operators ---------------------------------------------------------------------------


def test_empty_selector_matches_everything() -> None:
    for text in ("", "   "):
        selector = sel(text)
        assert selector.empty
        assert selector.matches({})
        assert selector.matches({"a": "b"})
        assert str(selector) == ""


@pytest.mark.parametrize("text", ["app=web", "app==web"])
def test_equality_requires_key_and_value(text: str) -> None:
    selector = sel(text)
    assert not selector.empty
    assert selector.matches({"app": "web", "other": "x"})
    assert not selector.matches({"app": "db"})
    assert not selector.matches({})


def test_not_equals_matches_objects_without_the_key() -> None:
    selector = sel("app!=web")
    assert selector.matches({})
    assert selector.matches({"app": "db"})
    assert not selector.matches({"app": "web"})


def test_in_and_notin() -> None:
    selector = sel("env in (prod,qa)")
    assert selector.matches({"env": "qa"})
    assert not selector.matches({"env": "dev"})
    assert not selector.matches({})

    negative = sel("env notin (prod,qa)")
    assert negative.matches({"env": "dev"})
    assert negative.matches({}), "notin matches objects that lack the key"
    assert not negative.matches({"env": "prod"})


def test_exists_and_does_not_exist() -> None:
    assert sel("gpu").matches({"gpu": ""})
    assert not sel("gpu").matches({"cpu": "x"})
    assert sel("!gpu").matches({"cpu": "x"})
    assert not sel("!gpu").matches({"gpu": "true"})


def test_greater_and_less_than_compare_integers() -> None:
    assert sel("replicas>5").matches({"replicas": "10"})
    assert not sel("replicas>5").matches({"replicas": "5"})
    assert not sel("replicas>5").matches({"replicas": "3"})
    assert sel("replicas<5").matches({"replicas": "004"})
    assert sel("replicas<5").matches({"replicas": "-3"})
    assert not sel("replicas<5").matches({}), "gt/lt need the key"
    assert not sel("replicas>5").matches({"replicas": "ten"})
    assert not sel("replicas>5").matches({"replicas": "99999999999999999999"}), "outside int64 is not an integer"
    assert not sel("replicas>5").matches({"replicas": "1_000"})


def test_conjunction_and_whitespace() -> None:
    selector = sel("  environment in (production, qa) ,tier notin(frontend),  app = web , !legacy ")
    labels = {"environment": "qa", "tier": "backend", "app": "web"}
    assert selector.matches(labels)
    assert not selector.matches(labels | {"legacy": "true"})
    assert not selector.matches(labels | {"tier": "frontend"})
    assert str(selector) == "app=web,environment in (production,qa),!legacy,tier notin (frontend)"


def test_prefixed_keys() -> None:
    selector = sel("app.kubernetes.io/name=nginx,example.com/tier in (a)")
    assert selector.matches({"app.kubernetes.io/name": "nginx", "example.com/tier": "a"})
    assert not selector.matches({"name": "nginx", "example.com/tier": "a"})


def test_keywords_are_ordinary_words_outside_operator_position() -> None:
    selector = sel("in in (notin,in),notin")
    assert selector.matches({"in": "notin", "notin": ""})
    assert not selector.matches({"in": "x", "notin": ""})


def test_empty_values() -> None:
    assert sel("a=").matches({"a": ""})
    assert not sel("a=").matches({})
    assert sel("a!=,b").matches({"b": "1"})
    assert sel("a in (x,)").matches({"a": ""})
    assert sel("a in (,x)").matches({"a": "x"})
    assert sel("a in (x,,y)").requirements[0].values == ("", "x", "y")


def test_empty_parentheses_mean_the_empty_string() -> None:
    # apimachinery parses "()" as the set {""}, not as an empty set.
    selector = sel("a in ()")
    assert selector.requirements == (Requirement("a", "in", ("",)),)
    assert selector.matches({"a": ""})
    assert not selector.matches({"a": "x"})
    assert str(selector) == "a in ()"


def test_canonical_string_sorts_keys_and_values() -> None:
    selector = sel("z notin (c,a,b),b>3,a,!c,d!=x,e==y,f<9")
    assert str(selector) == "a,b>3,!c,d!=x,e==y,f<9,z notin (a,b,c)"
    assert sel(str(selector)) == selector


def test_requirement_values_dedup_on_parse() -> None:
    assert sel("a in (x,x,y)").requirements[0].values == ("x", "y")


# --- label selectors: errors ------------------------------------------------------------------------------


def test_invalid_value_error() -> None:
    assert parse_error("app=-web") == (
        f'unable to parse requirement: values[0][app]: Invalid value: "-web": {LABEL_VALUE_RULE}'
    )


def test_invalid_key_errors_have_nil_path() -> None:
    assert parse_error("app.kubernetes_io/name=x") == (
        'unable to parse requirement: <nil>: Invalid value: "app.kubernetes_io/name": prefix part ' + SUBDOMAIN_RULE
    )
    assert parse_error("-app") == f'unable to parse requirement: <nil>: Invalid value: "-app": name part {QNAME_RULE}'
    assert parse_error("a/b/c") == (
        'unable to parse requirement: <nil>: Invalid value: "a/b/c": a qualified name '
        + QNAME_RULE
        + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
    )
    assert parse_error("/a") == 'unable to parse requirement: <nil>: Invalid value: "/a": prefix part must be non-empty'
    long_name = "a" * 64
    assert parse_error(long_name) == (
        f'unable to parse requirement: <nil>: Invalid value: "{long_name}": '
        "name part must be no more than 63 characters"
    )


def test_long_value_reports_both_rules() -> None:
    value = "-" + "a" * 63
    assert parse_error(f"k={value}") == (
        f'unable to parse requirement: values[0][k]: Invalid value: "{value}": '
        f"must be no more than 63 characters; {LABEL_VALUE_RULE}"
    )


def test_bad_values_are_quoted_like_go() -> None:
    assert parse_error('k=a"b\\c') == (
        f'unable to parse requirement: values[0][k]: Invalid value: "a\\"b\\\\c": {LABEL_VALUE_RULE}'
    )
    assert parse_error("k=\u00e9\x01") == (
        f'unable to parse requirement: values[0][k]: Invalid value: "\u00e9\\x01": {LABEL_VALUE_RULE}'
    )
    # Lengths are UTF-8 bytes: 32 two-byte characters exceed the 63 limit.
    value = "\u00e9" * 32
    assert parse_error(f"k={value}") == (
        f'unable to parse requirement: values[0][k]: Invalid value: "{value}": '
        f"must be no more than 63 characters; {LABEL_VALUE_RULE}"
    )


def test_gt_lt_operand_must_be_an_integer() -> None:
    assert parse_error("a>b") == (
        "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, "
        "the value must be an integer"
    )
    assert parse_error("a<") == (
        "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, "
        "the value must be an integer"
    )
    assert parse_error("a>-x") == (
        "unable to parse requirement: [values[0]: Invalid value: \"-x\": for 'Gt', 'Lt' operators, the value "
        f'must be an integer, values[0][a]: Invalid value: "-x": {LABEL_VALUE_RULE}]'
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
        ("a in (b,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
        ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("a=(", "unable to parse requirement: found '(', expected: identifier"),
        ("a=>b", "unable to parse requirement: found '>', expected: identifier"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        ("a,", "found '', expected: identifier after ','"),
        ("a,,b", "found ',', expected: identifier after ','"),
        ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
    ],
)
def test_syntax_errors(text: str, message: str) -> None:
    assert parse_error(text) == message


def test_selector_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        sel("a in")


# --- label selectors: metav1.LabelSelector ----------------------------------------------------------------


def test_from_object_match_labels_and_expressions() -> None:
    selector = LabelSelector.from_object(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "gpu", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist", "values": []},
            ],
        }
    )
    assert str(selector) == "app=web,env notin (prod),gpu,!legacy,tier in (a,b)"
    assert selector.matches({"app": "web", "tier": "a", "gpu": "1"})
    assert not selector.matches({"app": "web", "tier": "a", "gpu": "1", "env": "prod"})
    assert not selector.matches({"app": "web", "tier": "a"})
    assert not selector.matches({"app": "web", "tier": "a", "gpu": "1", "legacy": ""})


def test_from_object_null_selects_nothing_and_empty_selects_everything() -> None:
    nothing = LabelSelector.from_object(None)
    assert not nothing.empty
    assert not nothing.matches({})
    assert str(nothing) == ""
    empties: list[dict[str, object]] = [
        {},
        {"matchLabels": {}, "matchExpressions": []},
        {"matchLabels": None},
    ]
    for obj in empties:
        everything = LabelSelector.from_object(obj)
        assert everything.empty
        assert everything.matches({"a": "b"})


def test_from_object_errors() -> None:
    def error(obj: dict[str, object]) -> str:
        with pytest.raises(SelectorError) as info:
            LabelSelector.from_object(obj)
        return str(info.value)

    assert error({"matchExpressions": [{"key": "name", "operator": "Seriously"}]}) == (
        '"Seriously" is not a valid label selector operator'
    )
    assert error({"matchExpressions": [{"key": "name", "operator": "In", "values": []}]}) == (
        "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
    )
    assert error({"matchExpressions": [{"operator": "In"}]}) == (
        f'[key: Invalid value: "": name part must be non-empty; name part {QNAME_RULE}, '
        "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty]"
    )
    assert error({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x", "y"]}]}) == (
        'values: Invalid value: []string{"x", "y"}: values set must be empty for exists and does not exist'
    )
    assert error({"matchLabels": {"-app": "x"}}) == f'key: Invalid value: "-app": name part {QNAME_RULE}'
    assert error({"matchLabels": {"app": "a b"}}) == (f'values[0][app]: Invalid value: "a b": {LABEL_VALUE_RULE}')


def test_selector_from_map() -> None:
    selector = selector_from_map({"b": "2", "a": "1"})
    assert str(selector) == "a=1,b=2"
    assert selector.matches({"a": "1", "b": "2", "c": "3"})
    assert not selector.matches({"a": "1"})
    assert selector_from_map({}).empty
    assert selector_from_map({}).matches({"x": "y"})


# --- label selectors: properties --------------------------------------------------------------------------

KEYS = ["a", "b", "app.kubernetes.io/name", "in", "notin", "x-1"]
VALUES = ["", "x", "y", "in", "0", "5", "10", "007", "A_b.c"]

label_maps = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=len(KEYS))
value_sets = st.sets(st.sampled_from(VALUES), min_size=1, max_size=4).map(lambda s: tuple(sorted(s)))
integers = st.sampled_from(["0", "3", "5", "10", "42"])


@st.composite
def requirements(draw: st.DrawFn) -> Requirement:
    key = draw(st.sampled_from(KEYS))
    operator = draw(st.sampled_from(["=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt"]))
    if operator in ("in", "notin"):
        return Requirement(key, operator, draw(value_sets))
    if operator in ("exists", "!"):
        return Requirement(key, operator, ())
    if operator in ("gt", "lt"):
        return Requirement(key, operator, (draw(integers),))
    return Requirement(key, operator, (draw(st.sampled_from(VALUES)),))


def naive_match(requirement: Requirement, labels: dict[str, str]) -> bool:
    """An independent reading of the Kubernetes label selector documentation."""
    key, op, values = requirement.key, requirement.operator, requirement.values
    has = key in labels
    value = labels.get(key)
    if op in ("=", "=="):
        return has and value == values[0]
    if op == "!=":
        return not has or value != values[0]
    if op == "in":
        return has and value in set(values)
    if op == "notin":
        return value not in set(values)
    if op == "exists":
        return has
    if op == "!":
        return not has
    if not has or value is None or not value.isdigit():
        return False
    return int(value) > int(values[0]) if op == "gt" else int(value) < int(values[0])


@settings(max_examples=400, deadline=None)
@given(st.lists(requirements(), max_size=4), label_maps)
def test_round_trip_and_naive_model(reqs: list[Requirement], labels: dict[str, str]) -> None:
    selector = LabelSelector(tuple(reqs))
    expected = all(naive_match(r, labels) for r in reqs)
    assert selector.matches(labels) == expected
    reparsed = LabelSelector.parse(str(selector))
    assert reparsed.matches(labels) == expected
    canonical = str(reparsed)
    assert str(LabelSelector.parse(canonical)) == canonical


@settings(max_examples=200, deadline=None)
@given(label_maps)
def test_selector_from_map_matches_its_own_labels(labels: dict[str, str]) -> None:
    selector = selector_from_map(labels)
    assert selector.matches(labels)
    assert LabelSelector.parse(str(selector)) == selector


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["a", "b/c", "in", "notin", "=", "!", "(", ")", ",", "<", ">", " ", "1", "-"])))
def test_parse_never_fails_with_anything_but_selector_error(pieces: list[str]) -> None:
    text = "".join(pieces)
    try:
        selector = LabelSelector.parse(text)
    except SelectorError:
        return
    assert LabelSelector.parse(str(selector)) == selector


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab.=!,\\ ", max_size=12), st.text(alphabet="ab,=\\", max_size=6))
def test_field_selector_escaping_round_trips(text: str, value: str) -> None:
    try:
        selector = FieldSelector.parse(text)
    except SelectorError:
        pass
    else:
        assert FieldSelector.parse(str(selector)).matches({}) == selector.matches({})
    pinned = FieldSelector((FieldRequirement("metadata.name", "=", value),))
    assert FieldSelector.parse(str(pinned)) == pinned


# --- field selectors --------------------------------------------------------------------------------------


def test_field_selector_basics() -> None:
    selector = FieldSelector.parse("spec.nodeName=node-1,status.phase!=Failed")
    assert selector.requirements == (
        FieldRequirement("spec.nodeName", "=", "node-1"),
        FieldRequirement("status.phase", "!=", "Failed"),
    )
    assert selector.matches({"spec.nodeName": "node-1", "status.phase": "Running"})
    assert not selector.matches({"spec.nodeName": "node-1", "status.phase": "Failed"})
    assert not selector.matches({"spec.nodeName": "node-2"})
    assert str(selector) == "spec.nodeName=node-1,status.phase!=Failed"


def test_field_selector_double_equals_is_normalised() -> None:
    assert FieldSelector.parse("metadata.name==x").requirements == (FieldRequirement("metadata.name", "=", "x"),)


def test_field_selector_empty_value_and_missing_field() -> None:
    unscheduled = FieldSelector.parse("spec.nodeName=")
    assert unscheduled.matches({"spec.nodeName": ""})
    assert unscheduled.matches({}), "a missing field compares as the empty string"
    assert not unscheduled.matches({"spec.nodeName": "n1"})
    assert FieldSelector.parse("spec.nodeName!=").matches({"spec.nodeName": "n1"})
    assert not FieldSelector.parse("spec.nodeName!=").matches({})


def test_field_selector_empty_and_dropped_terms() -> None:
    for text in ("", ",", "=", "!=", ",="):
        selector = FieldSelector.parse(text)
        assert selector.empty
        assert selector.matches({"a": "b"})
    assert not FieldSelector.parse("a=").empty


def test_field_selector_escapes() -> None:
    selector = FieldSelector.parse(r"metadata.name=a\,b\=c\\d,spec.x=1")
    assert selector.requirements[0] == FieldRequirement("metadata.name", "=", "a,b=c\\d")
    assert selector.matches({"metadata.name": "a,b=c\\d", "spec.x": "1"})
    assert str(selector) == r"metadata.name=a\,b\=c\\d,spec.x=1"
    assert FieldSelector.parse(str(selector)) == selector


def test_field_selector_errors() -> None:
    def error(text: str) -> str:
        with pytest.raises(SelectorError) as info:
            FieldSelector.parse(text)
        return str(info.value)

    assert error("spec.nodeName") == "invalid selector: 'spec.nodeName'; can't understand 'spec.nodeName'"
    assert error("a=1,b") == "invalid selector: 'a=1,b'; can't understand 'b'"
    assert error("a=b=c") == "invalid field selector: unescaped character in value: 61"
    assert error(r"a=b\x") == "invalid field selector: invalid escape sequence: \\x"
    assert error("a=b\\") == "invalid field selector: invalid escape sequence: \\"


def test_field_selector_equality_value() -> None:
    selector = FieldSelector.parse("spec.nodeName!=a,spec.nodeName=n1,metadata.name=x")
    assert selector.equality_value("spec.nodeName") == "n1"
    assert selector.equality_value("metadata.name") == "x"
    assert selector.equality_value("status.phase") is None
    assert FieldSelector.parse("spec.nodeName=").equality_value("spec.nodeName") == ""
    assert FieldSelector.parse("spec.nodeName!=x").equality_value("spec.nodeName") is None


POD_FIELDS = frozenset({"spec.nodeName", "status.phase"})


def test_check_supported_accepts_and_rewrites_aliases() -> None:
    selector = FieldSelector.parse("spec.host=n1,metadata.name=p,metadata.namespace=ns,status.phase=Running")
    checked = selector.check_supported(POD_FIELDS, {"spec.host": "spec.nodeName"})
    assert checked.equality_value("spec.nodeName") == "n1"
    assert checked.equality_value("spec.host") is None
    assert checked.matches(
        {"spec.nodeName": "n1", "metadata.name": "p", "metadata.namespace": "ns", "status.phase": "Running"}
    )

    events = FieldSelector.parse("regarding.name=x,reportingController=kubelet").check_supported(
        frozenset({"involvedObject.name", "reportingComponent"}),
        {"regarding.name": "involvedObject.name", "reportingController": "reportingComponent"},
    )
    assert str(events) == "involvedObject.name=x,reportingComponent=kubelet"


def test_check_supported_errors() -> None:
    with pytest.raises(SelectorError) as info:
        FieldSelector.parse("spec.foo=1").check_supported(POD_FIELDS, {})
    assert str(info.value) == "field label not supported: spec.foo"

    with pytest.raises(SelectorError) as info:
        FieldSelector.parse("spec.replicas=1").check_supported(None, {})
    assert str(info.value) == (
        '"spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )

    assert FieldSelector.parse("metadata.name=a").check_supported(None, {}).equality_value("metadata.name") == "a"

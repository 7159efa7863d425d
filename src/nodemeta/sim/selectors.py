"""Label and field selectors as kube-apiserver 1.32 understands them.

Clients (kubectl, client-go informers, controllers) send selectors as strings and compare the error text of
a rejected one, so parsing follows apimachinery's `labels.Parse` and `fields.ParseSelector` token for token,
including their quirks: `k in ()` means "k is the empty string", `!=` and `notin` match objects that lack
the key, and a field selector term such as `=` with neither field nor value is silently dropped. Error
messages are built the way apimachinery's `field.Error` and aggregate errors render them, so `str(err)` is
the exact text of the 400 response.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

__all__ = [
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "Requirement",
    "SelectorError",
    "selector_from_map",
]


class SelectorError(ValueError):
    """A selector that cannot be parsed or is not allowed.

    str(err) is the exact message kube-apiserver puts in its 400 BadRequest Status.
    """


# Operator spellings are apimachinery's `selection.Operator` values; they double as the canonical names here.
EQUALS: Final = "="
DOUBLE_EQUALS: Final = "=="
NOT_EQUALS: Final = "!="
IN: Final = "in"
NOT_IN: Final = "notin"
EXISTS: Final = "exists"
DOES_NOT_EXIST: Final = "!"
GREATER_THAN: Final = "gt"
LESS_THAN: Final = "lt"

# The order matters: it is the list printed by "expected: in, notin, =, ==, !=, gt, lt".
_BINARY_OPERATORS: Final = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)

# metav1.LabelSelectorRequirement operators and what they become.
_OBJECT_OPERATORS: Final = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


# ----------------------------------------------------------------------------------------------------------
# Error rendering (apimachinery util/validation and util/validation/field)
# ----------------------------------------------------------------------------------------------------------

_GO_ESCAPES: Final = {
    "\a": r"\a",
    "\b": r"\b",
    "\f": r"\f",
    "\n": r"\n",
    "\r": r"\r",
    "\t": r"\t",
    "\v": r"\v",
}


def _go_quote(text: str) -> str:
    """Quote like Go's `%q`, which is how a bad string value appears inside a validation message."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xDC80 <= code <= 0xDCFF:
            # A byte that was not valid UTF-8, smuggled through by surrogateescape: Go prints the raw byte.
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _go_string_slice(values: Sequence[str]) -> str:
    """Render a `[]string` bad value the way Go's `%#v` does (1.32 predates JSON rendering of values).

    apimachinery copies matchExpressions values with `append([]string(nil), ...)`, so an empty list is nil.
    """
    if not values:
        return "[]string(nil)"
    return "[]string{" + ", ".join(_go_quote(v) for v in values) + "}"


def _invalid(path: str, rendered_value: str, detail: str) -> str:
    return f"{path}: Invalid value: {rendered_value}: {detail}"


def _aggregate(messages: Iterable[str]) -> str:
    """Join errors like `utilerrors.Aggregate`: duplicates once, several inside brackets."""
    unique = list(dict.fromkeys(messages))
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


def _regex_error(message: str, pattern: str, *examples: str) -> str:
    # The doubled space before "or" is apimachinery's, and clients see it verbatim.
    if not examples:
        return f"{message} (regex used for validation is '{pattern}')"
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{pattern}')"


def _max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


_EMPTY_ERROR: Final = "must be non-empty"

_QUALIFIED_NAME_FMT: Final = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_RE: Final = re.compile(_QUALIFIED_NAME_FMT)
_QUALIFIED_NAME_MSG: Final = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_QUALIFIED_NAME_MAX: Final = 63

_LABEL_VALUE_FMT: Final = f"({_QUALIFIED_NAME_FMT})?"
_LABEL_VALUE_RE: Final = re.compile(_LABEL_VALUE_FMT)
_LABEL_VALUE_MSG: Final = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_MAX: Final = 63

_DNS1123_LABEL_FMT: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT: Final = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_RE: Final = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1123_SUBDOMAIN_MSG: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_MAX: Final = 253


def _byte_len(text: str) -> int:
    """Go measures lengths in UTF-8 bytes, so a limit of 63 is hit sooner by non-ASCII text."""
    return len(text.encode("utf-8", "surrogatepass"))


def _dns1123_subdomain_errors(value: str) -> list[str]:
    errors = []
    if _byte_len(value) > _DNS1123_SUBDOMAIN_MAX:
        errors.append(_max_len_error(_DNS1123_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errors.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errors


def _qualified_name_errors(value: str) -> list[str]:
    """apimachinery's IsQualifiedName: the rules for a label key."""
    errors: list[str] = []
    parts = value.split("/")
    if len(parts) > 2:
        return [
            "a qualified name "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part " + _EMPTY_ERROR)
        else:
            errors.extend("prefix part " + error for error in _dns1123_subdomain_errors(prefix))
    if not name:
        errors.append("name part " + _EMPTY_ERROR)
    elif _byte_len(name) > _QUALIFIED_NAME_MAX:
        errors.append("name part " + _max_len_error(_QUALIFIED_NAME_MAX))
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errors.append(
            "name part " + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errors


def _label_value_errors(value: str) -> list[str]:
    errors = []
    if _byte_len(value) > _LABEL_VALUE_MAX:
        errors.append(_max_len_error(_LABEL_VALUE_MAX))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errors.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errors


def _key_error(key: str, path: str) -> str | None:
    errors = _qualified_name_errors(key)
    return _invalid(path, _go_quote(key), "; ".join(errors)) if errors else None


_INT64_RE: Final = re.compile(r"[+-]?[0-9]+")


def _parse_int64(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 10, 64): ASCII digits, optional sign, no underscores, 64-bit range."""
    if not _INT64_RE.fullmatch(text):
        return None
    digits = text.lstrip("+-").lstrip("0")
    if len(digits) > 19:
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


# ----------------------------------------------------------------------------------------------------------
# Label selectors
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    """One comma-separated term of a label selector.

    `values` keeps the order it was given in; matching treats it as a set and `str()` sorts it, as Go does.
    """

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Evaluate against an object's labels.

        The negative operators (`!=`, `notin`) hold for objects without the key, which is what makes
        `env!=prod` also select unlabelled objects. `gt`/`lt` compare as 64-bit integers and never match a
        value that is not one.
        """
        op = self.operator
        present = self.key in labels
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return present and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return not present or labels[self.key] not in self.values
        if op == EXISTS:
            return present
        if op == DOES_NOT_EXIST:
            return not present
        if op in (GREATER_THAN, LESS_THAN):
            if not present or len(self.values) != 1:
                return False
            actual = _parse_int64(labels[self.key])
            bound = _parse_int64(self.values[0])
            if actual is None or bound is None:
                return False
            return actual > bound if op == GREATER_THAN else actual < bound
        return False

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        values = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({values})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(op, op)
        return f"{self.key}{symbol}{values}"


_INTEGER_RULE: Final = "for 'Gt', 'Lt' operators, the value must be an integer"


def _operator_errors(operator: str, values: Sequence[str]) -> list[str]:
    """What NewRequirement says about the number and form of values an operator is given."""
    if operator in (IN, NOT_IN):
        count_ok, rule = bool(values), "for 'in', 'notin' operators, values set can't be empty"
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        count_ok, rule = len(values) == 1, "exact-match compatibility requires one single value"
    elif operator in (EXISTS, DOES_NOT_EXIST):
        count_ok, rule = not values, "values set must be empty for exists and does not exist"
    else:
        count_ok, rule = len(values) == 1, "for 'Gt', 'Lt' operators, exactly one value is required"
    errors = [] if count_ok else [_invalid("values", _go_string_slice(values), rule)]
    if operator in (GREATER_THAN, LESS_THAN):
        errors += [
            _invalid(f"values[{index}]", _go_quote(value), _INTEGER_RULE)
            for index, value in enumerate(values)
            if _parse_int64(value) is None
        ]
    return errors


def _new_requirement(key: str, operator: str, values: Sequence[str]) -> Requirement:
    """Build a validated requirement, reporting every problem at once like apimachinery's NewRequirement."""
    key_error = _key_error(key, "key")
    errors = [key_error] if key_error else []
    errors += _operator_errors(operator, values)
    for index, value in enumerate(values):
        value_errors = _label_value_errors(value)
        if value_errors:
            errors.append(_invalid(f"values[{index}][{key}]", _go_quote(value), "; ".join(value_errors)))
    if errors:
        raise SelectorError(_aggregate(errors))
    return Requirement(key, operator, tuple(values))


class _Token(enum.Enum):
    ERROR = enum.auto()
    END = enum.auto()
    CLOSE_PAREN = enum.auto()
    COMMA = enum.auto()
    NOT = enum.auto()
    DOUBLE_EQUALS = enum.auto()
    EQUALS = enum.auto()
    GREATER_THAN = enum.auto()
    IDENTIFIER = enum.auto()
    IN = enum.auto()
    LESS_THAN = enum.auto()
    NOT_EQUALS = enum.auto()
    NOT_IN = enum.auto()
    OPEN_PAREN = enum.auto()


_LITERAL_TOKENS: Final = {
    ")": _Token.CLOSE_PAREN,
    ",": _Token.COMMA,
    "!": _Token.NOT,
    "==": _Token.DOUBLE_EQUALS,
    "=": _Token.EQUALS,
    ">": _Token.GREATER_THAN,
    "in": _Token.IN,
    "<": _Token.LESS_THAN,
    "!=": _Token.NOT_EQUALS,
    "notin": _Token.NOT_IN,
    "(": _Token.OPEN_PAREN,
}
_SPECIAL_CHARS: Final = frozenset("=!(),><")
_WHITESPACE: Final = frozenset(" \t\r\n")
# Go's lexer reads a NUL byte as "end of input"; keeping that makes odd inputs fail the same way.
_END_CHAR: Final = "\x00"

_OPERATOR_TOKENS: Final = {
    _Token.IN: IN,
    _Token.NOT_IN: NOT_IN,
    _Token.EQUALS: EQUALS,
    _Token.DOUBLE_EQUALS: DOUBLE_EQUALS,
    _Token.NOT_EQUALS: NOT_EQUALS,
    _Token.GREATER_THAN: GREATER_THAN,
    _Token.LESS_THAN: LESS_THAN,
}


class _Lexer:
    """apimachinery's label selector lexer, including its greedy operator scanning and its keyword table."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0

    def tokens(self) -> list[tuple[_Token, str]]:
        items = []
        while True:
            item = self._lex()
            items.append(item)
            if item[0] is _Token.END:
                return items

    def _read(self) -> str:
        if self._pos < len(self._text):
            self._pos += 1
            return self._text[self._pos - 1]
        return _END_CHAR

    def _unread(self) -> None:
        self._pos -= 1

    def _lex(self) -> tuple[_Token, str]:
        ch = self._read()
        while ch in _WHITESPACE:
            ch = self._read()
        if ch == _END_CHAR:
            return _Token.END, ""
        self._unread()
        return self._scan_special() if ch in _SPECIAL_CHARS else self._scan_word()

    def _scan_word(self) -> tuple[_Token, str]:
        chars = []
        while True:
            ch = self._read()
            if ch == _END_CHAR:
                break
            if ch in _SPECIAL_CHARS or ch in _WHITESPACE:
                self._unread()
                break
            chars.append(ch)
        word = "".join(chars)
        return _LITERAL_TOKENS.get(word, _Token.IDENTIFIER), word

    def _scan_special(self) -> tuple[_Token, str]:
        buffer = ""
        last: tuple[_Token, str] | None = None
        while True:
            ch = self._read()
            if ch == _END_CHAR:
                break
            if ch not in _SPECIAL_CHARS:
                self._unread()
                break
            buffer += ch
            token = _LITERAL_TOKENS.get(buffer)
            if token is not None:
                last = (token, buffer)
            elif last is not None:
                self._unread()
                break
        if last is None:
            return _Token.ERROR, f"error expected: keyword found '{buffer}'"
        return last


class _Parser:
    """apimachinery's recursive-descent label selector parser.

    `in` and `notin` are keywords only where an operator may appear; as keys and values they are plain words,
    which is why every read says whether it is looking at a value position.
    """

    def __init__(self, text: str) -> None:
        self._items = _Lexer(text).tokens()
        self._pos = 0

    def _peek(self, as_value: bool = True) -> tuple[_Token, str]:
        token, literal = self._items[min(self._pos, len(self._items) - 1)]
        if as_value and token in (_Token.IN, _Token.NOT_IN):
            token = _Token.IDENTIFIER
        return token, literal

    def _next(self, as_value: bool = True) -> tuple[_Token, str]:
        item = self._peek(as_value)
        self._pos += 1
        return item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            token, literal = self._peek()
            if token is _Token.END:
                return requirements
            if token not in (_Token.IDENTIFIER, _Token.NOT):
                raise SelectorError(f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._requirement())
            except SelectorError as err:
                raise SelectorError(f"unable to parse requirement: {err}") from None
            token, literal = self._next()
            if token is _Token.END:
                return requirements
            if token is not _Token.COMMA:
                raise SelectorError(f"found '{literal}', expected: ',' or 'end of string'")
            token, literal = self._peek()
            if token not in (_Token.IDENTIFIER, _Token.NOT):
                raise SelectorError(f"found '{literal}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        negated = False
        token, literal = self._next()
        if token is _Token.NOT:
            negated = True
            token, literal = self._next()
        if token is not _Token.IDENTIFIER:
            raise SelectorError(f"found '{literal}', expected: identifier")
        key = literal
        # The parser has no field path, which apimachinery prints as "<nil>".
        key_error = _key_error(key, "<nil>")
        if key_error:
            raise SelectorError(key_error)
        if negated:
            return _new_requirement(key, DOES_NOT_EXIST, ())
        if self._peek()[0] in (_Token.END, _Token.COMMA):
            return _new_requirement(key, EXISTS, ())

        token, literal = self._next(as_value=False)
        operator = _OPERATOR_TOKENS.get(token)
        if operator is None:
            raise SelectorError(f"found '{literal}', expected: {', '.join(_BINARY_OPERATORS)}")
        values = self._value_set() if operator in (IN, NOT_IN) else self._exact_value()
        return _new_requirement(key, operator, sorted(values))

    def _value_set(self) -> set[str]:
        token, literal = self._next()
        if token is not _Token.OPEN_PAREN:
            raise SelectorError(f"found '{literal}' expected: '('")
        token, literal = self._peek()
        if token is _Token.CLOSE_PAREN:
            # "()" is the set holding the empty string, not an empty set.
            self._next()
            return {""}
        if token not in (_Token.IDENTIFIER, _Token.COMMA):
            raise SelectorError(f"found '{literal}', expected: ',', ')' or identifier")
        values = self._identifier_list()
        self._next()
        return values

    def _identifier_list(self) -> set[str]:
        """Values between parentheses; a missing value next to a comma is the empty string."""
        values: set[str] = set()
        while True:
            token, literal = self._next()
            if token is _Token.IDENTIFIER:
                values.add(literal)
                following, following_literal = self._peek()
                if following is _Token.CLOSE_PAREN:
                    return values
                if following is not _Token.COMMA:
                    raise SelectorError(f"found '{following_literal}', expected: ',' or ')'")
            elif token is _Token.COMMA:
                if not values:
                    values.add("")
                following, _ = self._peek()
                if following is _Token.CLOSE_PAREN:
                    values.add("")
                    return values
                if following is _Token.COMMA:
                    self._next()
                    values.add("")
            else:
                raise SelectorError(f"found '{literal}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        if self._peek()[0] in (_Token.END, _Token.COMMA):
            return {""}
        token, literal = self._next()
        if token is not _Token.IDENTIFIER:
            raise SelectorError(f"found '{literal}', expected: identifier")
        return {literal}


def _by_key(requirements: Iterable[Requirement]) -> tuple[Requirement, ...]:
    return tuple(sorted(requirements, key=lambda requirement: requirement.key))


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A conjunction of label requirements, kept sorted by key like apimachinery's internal selector.

    `matches_nothing` exists because a null metav1.LabelSelector selects no objects at all, a state that no
    list of requirements can express; it prints as "" just as apimachinery's Nothing() does.
    """

    requirements: tuple[Requirement, ...]
    matches_nothing: bool = False

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse the `labelSelector` query parameter syntax; the empty string selects everything."""
        return cls(_by_key(_Parser(text).parse()))

    @classmethod
    def from_object(cls, obj: Mapping[str, Any] | None) -> LabelSelector:
        """Convert a metav1.LabelSelector (`matchLabels`, `matchExpressions`) like LabelSelectorAsSelector.

        None selects nothing while `{}` selects everything, matching the API convention for null and empty
        selectors.
        """
        if obj is None:
            return cls((), matches_nothing=True)
        match_labels = _mapping_field(obj, "matchLabels")
        expressions = _list_field(obj, "matchExpressions")
        requirements = [
            _new_requirement(key, EQUALS, [_string(value, "matchLabels")])
            for key, value in sorted(match_labels.items())
        ]
        for expression in expressions:
            if not isinstance(expression, Mapping):
                raise SelectorError("matchExpressions: each entry must be an object")
            operator_name = _string(expression.get("operator") or "", "operator")
            operator = _OBJECT_OPERATORS.get(operator_name)
            if operator is None:
                raise SelectorError(f"{_go_quote(operator_name)} is not a valid label selector operator")
            values = [_string(value, "values") for value in _list_field(expression, "values")]
            key = _string(expression.get("key") or "", "key")
            requirements.append(_new_requirement(key, operator, values))
        return cls(_by_key(requirements))

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything, so callers can skip filtering."""
        return not self.requirements and not self.matches_nothing

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.matches_nothing:
            return False
        return all(requirement.matches(labels) for requirement in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


def _mapping_field(obj: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SelectorError(f"{name}: must be an object")
    return value


def _list_field(obj: Mapping[str, Any], name: str) -> Sequence[Any]:
    value = obj.get(name)
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise SelectorError(f"{name}: must be a list")
    return value


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise SelectorError(f"{name}: must be a string")
    return value


def selector_from_map(labels: Mapping[str, str]) -> LabelSelector:
    """Equality on every key, e.g. a Service's or ReplicationController's `spec.selector`.

    Like apimachinery's SelectorFromSet this does not validate, and an empty map gives the empty selector that
    matches everything; whether an empty map should select anything is the caller's decision.
    """
    return LabelSelector(_by_key(Requirement(key, EQUALS, (value,)) for key, value in labels.items()))


# ----------------------------------------------------------------------------------------------------------
# Field selectors
# ----------------------------------------------------------------------------------------------------------

_ALWAYS_SELECTABLE: Final = ("metadata.name", "metadata.namespace")
# "==" is tried before "=" at each position so that "a==b" does not leave "=b" as the value.
_FIELD_OPERATORS: Final = ("!=", "==", "=")


def _escape_field_value(value: str) -> str:
    """fields.EscapeValue: backslash, comma and equals are the characters the term splitter cares about."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(value: str) -> str:
    """fields.UnescapeValue, whose error texts (a rune printed as its number) reach clients unchanged."""
    out = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not backslash-escaped, leaving the escapes in place for the value parser."""
    if not text:
        return []
    terms = []
    start = 0
    escaped = False
    for index, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    """Split at the first operator; field names cannot be escaped, so the first one wins."""
    for index in range(len(term)):
        for operator in _FIELD_OPERATORS:
            if term.startswith(operator, index):
                return term[:index], operator, term[index + len(operator) :]
    return None


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """`field=value` or `field!=value`; `==` is stored as `=` since the two mean the same."""

    field: str
    operator: str
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        actual = fields.get(self.field, "")
        return actual == self.value if self.operator == EQUALS else actual != self.value

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{_escape_field_value(self.value)}"


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """A conjunction of field requirements, in the order apimachinery evaluates them (sorted raw terms)."""

    requirements: tuple[FieldRequirement, ...]

    @classmethod
    def parse(cls, text: str) -> FieldSelector:
        """Check syntax only; which fields a resource accepts is `check_supported`'s business."""
        requirements = []
        for term in sorted(_split_terms(text)):
            if not term:
                continue
            split = _split_term(term)
            if split is None:
                raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
            field, operator, raw_value = split
            value = _unescape_field_value(raw_value)
            # apimachinery drops a term with neither field nor value ("=" or "!="), so it restricts nothing.
            if field or value:
                requirements.append(FieldRequirement(field, NOT_EQUALS if operator == NOT_EQUALS else EQUALS, value))
        return cls(tuple(requirements))

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Evaluate against an object's selectable fields; a field the object lacks compares as ""."""
        return all(requirement.matches(fields) for requirement in self.requirements)

    def equality_value(self, field: str) -> str | None:
        """The value an object's `field` must equal, if the selector pins it (lets watchers be indexed)."""
        for requirement in self.requirements:
            if requirement.field == field and requirement.operator == EQUALS:
                return requirement.value
        return None

    def check_supported(self, selectable: frozenset[str] | None, aliases: Mapping[str, str]) -> FieldSelector:
        """Apply a resource's field-label conversion, returning the selector in canonical field names.

        `selectable` is None for kinds that rely on apimachinery's default conversion, which only knows the
        metadata fields and words its error differently from kinds that register their own table.
        """
        converted = []
        for requirement in self.requirements:
            field = requirement.field
            if field in aliases:
                field = aliases[field]
            elif field in _ALWAYS_SELECTABLE:
                pass
            elif selectable is None:
                raise SelectorError(
                    f"{_go_quote(field)} is not a known field selector: "
                    f'only "{_ALWAYS_SELECTABLE[0]}", "{_ALWAYS_SELECTABLE[1]}"'
                )
            elif field not in selectable:
                raise SelectorError(f"field label not supported: {field}")
            converted.append(replace(requirement, field=field))
        return FieldSelector(tuple(converted))

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)

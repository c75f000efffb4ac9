"""`tempo-lite capture` assertions: `--expect`, `--expect-none`, `--expect-count` and `--assertions FILE` (YAML)
parsed and checked up front, so a bad query or file is a usage error (exit 2) naming where, before the command
runs. Pure: no I/O.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from tempo_lite.errors import InvalidRequest
from tempo_lite.querier.search import parse_search_query


class CaptureError(Exception):
    """A usage error found before the command runs (bad assertion, unreadable file): exit code 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message




_COUNT = re.compile(r"^\s*(>=|<=|==|!=|=|>|<)?\s*(\d+)\s*$")
_COUNT_OPS: dict[str, Callable[[int, int], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "=": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
}


@dataclass(frozen=True)
class CountCheck:
    """How many traces must match: `3` (exactly), `>=3`, `<5`, `!=0`..."""

    op: str
    value: int

    def holds(self, count: int) -> bool:
        return _COUNT_OPS[self.op](count, self.value)

    def __str__(self) -> str:
        return f"{'==' if self.op == '=' else self.op}{self.value}"


def parse_count(text: object) -> CountCheck:
    if isinstance(text, bool):
        raise ValueError(f"invalid count {text!r} (use e.g. 3, >=3, <5)")
    m = _COUNT.match(str(text))
    if not m:
        raise ValueError(f"invalid count {text!r} (use e.g. 3, >=3, <5)")
    return CountCheck(m.group(1) or "==", int(m.group(2)))


EXPECT = "expect"
EXPECT_NONE = "expect_none"


@dataclass(frozen=True)
class Assertion:
    """One check over the captured traces. `source` says where it was written (`--expect`, `file:line`)."""

    kind: str  # EXPECT | EXPECT_NONE
    query: str
    source: str
    name: str = ""
    count: CountCheck | None = None

    @property
    def title(self) -> str:
        if self.name:
            return self.name
        if self.kind == EXPECT_NONE:
            return f"none: {self.query}"
        if self.count is not None:
            return f"count {self.count}: {self.query}"
        return self.query

    def expectation(self) -> str:
        if self.kind == EXPECT_NONE:
            return "no trace matches"
        if self.count is not None:
            return f"matching traces {self.count}"
        return "at least one trace matches"

    def holds(self, matched: int) -> bool:
        if self.kind == EXPECT_NONE:
            return matched == 0
        if self.count is not None:
            return self.count.holds(matched)
        return matched > 0


def check_query(query: str, where: str, *, first_line: int | None = None) -> None:
    """Raise CaptureError if `query` cannot be searched; the position is file:line when `first_line` is known."""
    try:
        parse_search_query(query)
    except InvalidRequest as exc:
        line = getattr(exc, "line", None)
        col = getattr(exc, "col", None)
        detail = getattr(exc, "detail", exc.message)
        if first_line is not None:
            at = f"{where}:{first_line + (line or 1) - 1}"
            if line is None:
                raise CaptureError(f"{at}: invalid TraceQL {query.strip()!r}: {detail}") from exc
            text = query.splitlines()[line - 1] if line <= len(query.splitlines()) else query
            raise CaptureError(f"{at}: invalid TraceQL at col {col} of {text.strip()!r}: {detail}") from exc
        raise CaptureError(f"{where} {query!r}: {exc.message}") from exc


def cli_assertion(kind: str, query: str, count: str | None, index: int) -> Assertion:
    option = {EXPECT: "--expect", EXPECT_NONE: "--expect-none"}[kind] if count is None else "--expect-count"
    where = f"{option} #{index}"
    check_query(query, where)
    try:
        parsed = parse_count(count) if count is not None else None
    except ValueError as exc:
        raise CaptureError(f"{where}: {exc}") from exc
    return Assertion(kind, query, option, count=parsed)


_ENTRY_KEYS = {"name", EXPECT, EXPECT_NONE, "count"}


def _scalar(node: yaml.Node, path: str, key: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise CaptureError(f"{path}:{node.start_mark.line + 1}: {key!r} must be a string")
    return str(node.value)


def _content_line(node: yaml.ScalarNode) -> int:
    """1-based file line of the first line of a scalar's text (block scalars start on the next line)."""
    return node.start_mark.line + (2 if node.style in ("|", ">") else 1)


def load_assertions(text: str, path: str) -> list[Assertion]:
    """Parse an assertions file: a YAML list of {name?, expect | expect_none, count?}; errors name file:line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise CaptureError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    if root is None:
        return []
    if not isinstance(root, yaml.SequenceNode):
        raise CaptureError(f"{path}:{root.start_mark.line + 1}: expected a list of assertions")
    out: list[Assertion] = []
    for item in root.value:
        line = item.start_mark.line + 1
        if not isinstance(item, yaml.MappingNode):
            raise CaptureError(f"{path}:{line}: an assertion must be a mapping with 'expect' or 'expect_none'")
        entry: dict[str, yaml.Node] = {}
        for key_node, value_node in item.value:
            key = str(key_node.value)
            if key not in _ENTRY_KEYS:
                raise CaptureError(
                    f"{path}:{key_node.start_mark.line + 1}: unknown key {key!r} "
                    f"(expected name, expect, expect_none, count)"
                )
            entry[key] = value_node
        kinds = [k for k in (EXPECT, EXPECT_NONE) if k in entry]
        if len(kinds) != 1:
            raise CaptureError(f"{path}:{line}: an assertion needs exactly one of 'expect' or 'expect_none'")
        kind = kinds[0]
        query_node = entry[kind]
        query = _scalar(query_node, path, kind)
        assert isinstance(query_node, yaml.ScalarNode)
        check_query(query, path, first_line=_content_line(query_node))
        count = None
        if "count" in entry:
            count_node = entry["count"]
            if kind == EXPECT_NONE:
                raise CaptureError(f"{path}:{count_node.start_mark.line + 1}: 'count' only goes with 'expect'")
            try:
                count = parse_count(_scalar(count_node, path, "count"))
            except ValueError as exc:
                raise CaptureError(f"{path}:{count_node.start_mark.line + 1}: {exc}") from exc
        name = _scalar(entry["name"], path, "name") if "name" in entry else ""
        out.append(Assertion(kind, query, f"{path}:{line}", name=name, count=count))
    return out



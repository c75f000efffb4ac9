"""A trace as a waterfall for the terminal (pure): the span tree with a time bar per span."""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.proto.trace.v1.trace_pb2 import Status, TracesData

RED = "\x1b[31m"
DIM = "\x1b[2m"
RESET = "\x1b[0m"


def fmt_duration(ns: int) -> str:
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.1f}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f}ms"
    return f"{ns / 1e9:.2f}s"


@dataclass
class Node:
    span_id: bytes
    parent_id: bytes
    service: str
    name: str
    start: int
    end: int
    error: bool
    children: list[Node] = field(default_factory=list)


def nodes(traces: TracesData) -> list[Node]:
    """Root nodes, children sorted by start time. Spans whose parent is missing become roots."""
    by_id: dict[bytes, Node] = {}
    every: list[Node] = []
    for rs in traces.resource_spans:
        service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"),
                       "unknown_service")
        for ss in rs.scope_spans:
            for s in ss.spans:
                n = Node(s.span_id, s.parent_span_id, service, s.name, s.start_time_unix_nano, s.end_time_unix_nano,
                         s.status.code == Status.STATUS_CODE_ERROR)
                every.append(n)
                by_id[s.span_id] = n
    roots = []
    for n in every:
        parent = by_id.get(n.parent_id) if n.parent_id else None
        if parent is not None and parent is not n:
            parent.children.append(n)
        else:
            roots.append(n)
    for n in every:
        n.children.sort(key=lambda c: (c.start, c.name))
    return sorted(roots, key=lambda r: (r.start, r.name))


def render(traces: TracesData, *, width: int = 100, color: bool = False) -> list[str]:
    """One line per span: tree, `service: name`, a bar placed on the trace's time axis, duration."""
    roots = nodes(traces)
    if not roots:
        return []
    flat: list[tuple[str, Node]] = []

    def walk(n: Node, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        flat.append((prefix + branch, n))
        child_prefix = prefix + ("" if top else ("   " if last else "│  "))
        for i, c in enumerate(n.children):
            walk(c, child_prefix, i == len(n.children) - 1, False)

    seen: set[int] = set()
    for r in roots:
        if id(r) not in seen:
            seen.add(id(r))
            walk(r, "", True, True)
    t0 = min(n.start for _, n in flat)
    t1 = max(n.end for _, n in flat)
    total = max(1, t1 - t0)
    labels = [f"{tree}{n.service}: {n.name}" for tree, n in flat]
    label_w = min(max(len(x) for x in labels), max(20, width // 2))
    bar_w = max(10, width - label_w - 12)
    lines = []
    for label, (_, n) in zip(labels, flat, strict=True):
        if len(label) > label_w:
            label = label[: label_w - 1] + "…"
        a = int((n.start - t0) / total * bar_w)
        b = max(a + 1, int(round((n.end - t0) / total * bar_w)))
        bar = " " * a + ("█" * (b - a)) + " " * (bar_w - b)
        dur = fmt_duration(max(0, n.end - n.start))
        mark = " !" if n.error else ""
        if color:
            bar = (RED if n.error else "") + bar + RESET
            dur = DIM + dur + RESET
            if n.error:
                mark = RED + " !" + RESET
        lines.append(f"{label.ljust(label_w)} │{bar}│ {dur}{mark}")
    return lines

"""Event and link attributes in returned spans, and unscoped `.attr` scopes, in live, block and split forms.

Tempo (vParquet4/5 `span.AllAttributes`, `asTraceSearchMetadata`) returns the event and link attribute
values its storage collected for a span under the attribute name without scope; the storage keeps only
values passing a pushed-down comparison and the last one wins. Unscoped `.attr` conditions are pushed to
the span and resource scopes only (`categorizeConditions`), never to events, links or instrumentation.
"""

from __future__ import annotations

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from traceql_fixtures import add_resource_spans, key_values, make_span

from tempo_lite import spantable
from tempo_lite.traceql.engine import evaluate

TID = bytes(15) + b"\x01"
TID2 = bytes(15) + b"\x02"
LINKED = bytes(15) + b"\x09"


def _data() -> TracesData:
    data = TracesData()
    root = make_span(TID, bytes(7) + b"\x01", b"", "root", 1000, 5000)
    err = make_span(TID, bytes(7) + b"\x02", root.span_id, "err", 1100, 2000, attrs={"code": 500})
    for etype, n in (("IOError", 1), ("ValueError", 2), ("IOError", 3)):
        ev = err.events.add()
        ev.name = "exception"
        ev.time_unix_nano = 1100 + n
        ev.attributes.extend(key_values({"exception.type": etype, "seq": n}))
    linker = make_span(TID2, bytes(7) + b"\x03", b"", "linker", 1000, 3000, attrs={"tier": "span"})
    link = linker.links.add()
    link.trace_id = LINKED
    link.span_id = bytes(7) + b"\x07"
    link.attributes.extend(key_values({"link.kind": "follows", "only.in.link": "yes"}))
    ev = linker.events.add()
    ev.name = "note"
    ev.time_unix_nano = 1500
    ev.attributes.extend(key_values({"only.in.event": "yes"}))
    add_resource_spans(data, {"service.name": "svc"}, [root, err])
    add_resource_spans(data, {"service.name": "other", "tier": "resource"}, [linker], scope={"name": "lib"})
    return data


def _forms() -> dict[str, spantable.SpanTable]:
    data = _data()
    live = spantable.flatten(data.resource_spans)
    block = spantable.dedicate(spantable.with_nested_sets(spantable.sort_by_trace(live)), ["code"])
    rs = list(data.resource_spans)
    split = spantable.concat([spantable.flatten(rs[:1]), spantable.flatten(rs[1:])])
    return {"live": live, "block": block, "split": split}


FORMS = _forms()


def _shown(query: str, form: str) -> dict[str, list[tuple[str, object]]]:
    out: dict[str, list[tuple[str, object]]] = {}
    for m in evaluate(query, FORMS[form], spss=10):
        for ss in m.spansets:
            for sp in ss.spans:
                out[sp.span_id.hex()] = sorted((k, v[1]) for k, v in sp.attributes)
    return out


ERR = (bytes(7) + b"\x02").hex()
LINKER = (bytes(7) + b"\x03").hex()


@pytest.mark.parametrize("form", ["live", "block", "split"])
def test_event_attribute_condition_shows_the_matching_value(form: str) -> None:
    assert _shown("{ event.exception.type = `ValueError` }", form) == {ERR: [("exception.type", "ValueError")]}


@pytest.mark.parametrize("form", ["live", "block", "split"])
def test_event_attribute_shows_the_last_matching_event(form: str) -> None:
    # Events 1 and 3 match; Tempo keeps the last value its storage collected for the span.
    assert _shown("{ event.exception.type = `IOError` && event.seq > 0 }", form) == {
        ERR: [("exception.type", "IOError"), ("seq", 3)]
    }
    assert _shown("{ event.seq < 3 }", form) == {ERR: [("seq", 2)]}


@pytest.mark.parametrize("form", ["live", "block", "split"])
def test_selected_event_attribute_shows_last_value(form: str) -> None:
    got = _shown("{ span.code = 500 } | select(event.exception.type)", form)
    assert got == {ERR: [("code", 500), ("exception.type", "IOError")]}


@pytest.mark.parametrize("form", ["live", "block", "split"])
def test_link_attribute_in_results(form: str) -> None:
    assert _shown("{ link.link.kind = `follows` }", form) == {LINKER: [("link.kind", "follows")]}
    assert _shown("{ name = `linker` } | select(link.only.in.link)", form) == {LINKER: [("only.in.link", "yes")]}


@pytest.mark.parametrize("form", ["live", "block", "split"])
def test_event_attribute_absent_from_span_without_events(form: str) -> None:
    got = _shown("{ name = `root` || event.exception.type = `IOError` }", form)
    assert got == {(bytes(7) + b"\x01").hex(): [], ERR: [("exception.type", "IOError")]}


@pytest.mark.parametrize("form", ["live", "block", "split"])
def test_unscoped_attribute_matches_span_and_resource_only(form: str) -> None:
    # Tempo pushes unscoped conditions to the span and resource scopes, not events, links or scope.
    assert _shown("{ .only.in.event = `yes` }", form) == {}
    assert _shown("{ .only.in.link = `yes` }", form) == {}
    assert _shown("{ .only.in.event != nil || .only.in.link != nil }", form) == {}
    assert set(_shown("{ .code = 500 }", form)) == {ERR}
    assert set(_shown("{ .service.name = `other` }", form)) == {LINKER}


@pytest.mark.parametrize("form", ["live", "block", "split"])
def test_unscoped_result_values_are_the_span_and_resource_values_that_pass(form: str) -> None:
    # Tempo collects the span value and the resource value that pass the pushed-down condition and
    # returns each under the unscoped name: one, or both when both pass.
    assert _shown("{ .tier = `resource` } | select(.service.name)", form) == {
        LINKER: [("service.name", "other"), ("tier", "resource")]
    }
    assert _shown("{ .tier = `span` }", form) == {LINKER: [("tier", "span")]}
    assert _shown("{ .tier != nil }", form) == {LINKER: [("tier", "resource"), ("tier", "span")]}
    assert _shown("{ name = `linker` } | select(.tier)", form) == {LINKER: [("tier", "resource"), ("tier", "span")]}

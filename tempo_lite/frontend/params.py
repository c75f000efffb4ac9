"""Parsing and validation of the query API's parameters (pure), with Tempo's error texts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tempo_lite.errors import InvalidRequest
from tempo_lite.traceql import MAX_QUERY_BYTES, parse_go_duration


def parse_go_duration_ns(text: str, name: str) -> int:
    """Parameter `name` as a Go duration (`minDuration=1.5ms`), or a 400 naming it."""
    t = text.strip()
    ns = 0 if t == "0" else parse_go_duration(t)
    if ns is None:
        raise InvalidRequest(f"invalid {name}: time: invalid duration {text!r}")
    return ns


def _uint(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidRequest(f"invalid {name}: strconv.ParseUint: parsing {raw!r}: invalid syntax") from exc
    if value < 0 or value > 0xFFFFFFFF:
        raise InvalidRequest(f"invalid {name}: {raw!r} out of range")
    return value


@dataclass(frozen=True)
class TimeRange:
    """Unix seconds; both 0 means 'recent data only' for search and 'everything' for trace by ID."""

    start: int = 0
    end: int = 0

    @property
    def start_ns(self) -> int:
        return self.start * 1_000_000_000

    @property
    def end_ns(self) -> int:
        return self.end * 1_000_000_000 if self.end else 0

    @property
    def is_set(self) -> bool:
        return bool(self.start or self.end)


def parse_time_range(params: Mapping[str, str], max_duration_s: float | None = None) -> TimeRange:
    start = _uint(params, "start") or 0
    end = _uint(params, "end") or 0
    if (start or end) and end <= start:
        raise InvalidRequest(
            f"http parameter start must be before end. received start={start} end={end}"
        )
    if max_duration_s and (start or end) and end - start > max_duration_s:
        raise InvalidRequest(
            f"range specified by start and end ({end - start}s) exceeds {int(max_duration_s)}s. "
            f"received start={start} end={end}"
        )
    return TimeRange(start, end)


@dataclass(frozen=True)
class SearchParams:
    query: str | None
    tags: dict[str, str] | None
    min_duration_ns: int
    max_duration_ns: int
    limit: int
    spss: int
    time: TimeRange


def parse_logfmt(text: str) -> dict[str, str]:
    """Legacy `tags=` parameter: logfmt `k=v k2="v 2"`; a repeated key is an error."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] == " ":
            i += 1
        if i >= n:
            break
        j = i
        while j < n and text[j] not in "= ":
            j += 1
        key = text[i:j]
        value = ""
        if j < n and text[j] == "=":
            j += 1
            if j < n and text[j] == '"':
                j += 1
                buf = []
                while j < n and text[j] != '"':
                    if text[j] == "\\" and j + 1 < n:
                        j += 1
                    buf.append(text[j])
                    j += 1
                if j >= n:
                    raise InvalidRequest(f"invalid tags: unterminated quote in {text!r}")
                j += 1
                value = "".join(buf)
            else:
                k = j
                while j < n and text[j] != " ":
                    j += 1
                value = text[k:j]
        if not key:
            raise InvalidRequest(f"invalid tags: empty key in {text!r}")
        if key in out:
            raise InvalidRequest(f"invalid tags: duplicate key {key!r}")
        out[key] = value
        i = j
    return out


_KNOWN_SEARCH_PARAMS = {"q", "tags", "minDuration", "maxDuration", "limit", "spss", "start", "end"}


def parse_search(
    params: Mapping[str, str],
    *,
    default_limit: int,
    max_limit: int,
    max_spss: int,
    max_duration_s: float,
) -> SearchParams:
    query = params.get("q")
    tags_raw = params.get("tags")
    if query is not None and tags_raw is not None:
        raise InvalidRequest("invalid request: can't specify tags and q in the same query")
    if query is not None and len(query.encode()) > MAX_QUERY_BYTES:
        raise InvalidRequest(f"invalid TraceQL query: query is larger than the maximum of {MAX_QUERY_BYTES} bytes")
    tags = parse_logfmt(tags_raw) if tags_raw is not None else None
    if query is None and tags is None and not any(k in params for k in ("start", "end")):
        legacy = {k: v for k, v in params.items() if k not in _KNOWN_SEARCH_PARAMS}
        tags = legacy or None
    min_d = parse_go_duration_ns(params["minDuration"], "minDuration") if params.get("minDuration") else 0
    max_d = parse_go_duration_ns(params["maxDuration"], "maxDuration") if params.get("maxDuration") else 0
    if max_d and min_d > max_d:
        raise InvalidRequest("invalid maxDuration: must be greater than minDuration")
    limit = _uint(params, "limit")
    if limit is None:
        limit = default_limit
    elif limit == 0:
        raise InvalidRequest("invalid limit: must be a positive number")
    elif limit > max_limit:
        raise InvalidRequest(f"invalid limit: must be less than or equal to {max_limit}")
    spss = _uint(params, "spss") or 3
    if spss > max_spss:
        raise InvalidRequest(f"invalid spss: must be less than or equal to {max_spss}")
    return SearchParams(query, tags, min_d, max_d, limit, spss, parse_time_range(params, max_duration_s))

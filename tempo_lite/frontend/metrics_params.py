"""Parameters of `/api/metrics/query_range` and `/api/metrics/query` (pure), with Tempo's 400 messages.

Times (`start`, `end`) are unix seconds (<= 10 digits), unix nanoseconds (more digits), fractional seconds
(rounded to the millisecond, as Tempo's `parseTimestamp`) or RFC3339; `end` defaults to now, `start` to
`min(end, now) - since` (`since` a Prometheus duration, default 1h). `step` is float seconds or a
duration (`30s`, `1m`, `1h30m`); without it the step is Tempo 3.0's default (about range/240, snapped to
1h/5m/1m/15s/5s/1s, 50 ms granularity below one minute).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from tempo_lite.errors import InvalidRequest
from tempo_lite.frontend.params import parse_go_duration_ns
from tempo_lite.traceql import MAX_QUERY_BYTES, parse_prom_duration

SECOND = 1_000_000_000
DEFAULT_SINCE_NS = 3600 * SECOND
MAX_DURATION_NS = 24 * 3600 * SECOND  # query_frontend.metrics.max_duration (Tempo 3.0 default)
MAX_POINTS = 10_000
MAX_EXEMPLARS = 100  # query_frontend.metrics.max_exemplars
DEFAULT_MAX_SERIES = 1000  # query_frontend.metrics.max_response_series
TARGET_POINTS = 240
QUERY_WINDOW_WITHIN_CUTOFF = "query window falls entirely within query_end_cutoff"
_LADDER_NS = (3600 * SECOND, 300 * SECOND, 60 * SECOND, 15 * SECOND, 5 * SECOND, SECOND)
_SUB_MINUTE_NS = 50_000_000



@dataclass(frozen=True)
class MetricsParams:
    """A validated metrics request; times in unix nanoseconds. `step_ns` is end - start for instant queries."""

    query: str
    start_ns: int
    end_ns: int
    step_ns: int
    exemplars: int
    max_series: int
    instant: bool


def parse_prom_duration_ns(text: str) -> int:
    """Prometheus `model.ParseDuration`: `1h30m`, `1d`, `2w`, `100ms` (no fractions)."""
    ns = parse_prom_duration(text)
    if ns is None:
        raise ValueError(f"not a valid duration string: {text!r}")
    return ns


def parse_timestamp_ns(text: str) -> int:
    """Tempo's `parseTimestamp`: fractional seconds, unix s (<= 10 digits) or ns, then RFC3339."""
    if "." in text:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            frac, whole = math.modf(value)
            return int(whole) * SECOND + int(round(frac * 1000) * 1_000_000)
    try:
        number = int(text, 10)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax') from None
        if dt.tzinfo is None:
            raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax') from None
        seconds = int(dt.timestamp())
        return seconds * SECOND + dt.microsecond * 1000 + _rfc3339_extra_nanos(text)
    if len(text.lstrip("-")) <= 10:
        return number * SECOND
    return number


def _rfc3339_extra_nanos(text: str) -> int:
    """Digits beyond microseconds in an RFC3339 fraction (Python keeps only microseconds)."""
    m = re.search(r"\.(\d+)", text)
    if not m or len(m.group(1)) <= 6:
        return 0
    return int(m.group(1)[6:9].ljust(3, "0"))


def parse_step_ns(text: str) -> int:
    """Tempo's `parseSecondsOrDuration`: float seconds, else a duration string."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isnan(seconds):
        ns = seconds * SECOND
        if not math.isfinite(ns) or abs(ns) > 2**63 - 1:
            raise InvalidRequest(f'cannot parse "{text}" to a valid duration. It overflows int64')
        return int(ns)
    try:
        return parse_prom_duration_ns(text)
    except ValueError:
        pass
    try:
        return parse_go_duration_ns(text, "step")
    except InvalidRequest:
        raise InvalidRequest(f'cannot parse "{text}" to a valid duration') from None


def default_step_ns(start_ns: int, end_ns: int) -> int:
    """Tempo 3.0 `DefaultQueryRangeStep`: ~240 points, floored to a ladder rung (50 ms under a minute)."""
    window = end_ns - start_ns
    baseline = window // TARGET_POINTS
    if window < 60 * SECOND:
        return baseline // _SUB_MINUTE_NS * _SUB_MINUTE_NS if baseline > _SUB_MINUTE_NS else _SUB_MINUTE_NS
    for rung in _LADDER_NS:
        if baseline > rung:
            return baseline // rung * rung
    return SECOND


def _query(params: Mapping[str, str]) -> str:
    # `q` wins over the Prometheus-compatible `query`, as in Tempo.
    q = params.get("q") or params.get("query") or ""
    if not q:
        raise InvalidRequest("invalid TraceQL query: query is required (parameter q)")
    if len(q.encode()) > MAX_QUERY_BYTES:
        raise InvalidRequest(f"invalid TraceQL query: query is larger than the maximum of {MAX_QUERY_BYTES} bytes")
    return q


def _bounds(params: Mapping[str, str], now_ns: int) -> tuple[int, int]:
    since = DEFAULT_SINCE_NS
    if params.get("since"):
        try:
            since = parse_prom_duration_ns(params["since"])
        except ValueError as exc:
            raise InvalidRequest(f"could not parse 'since' parameter: {exc}") from None
    end = now_ns
    if params.get("end"):
        try:
            end = parse_timestamp_ns(params["end"])
        except ValueError as exc:
            raise InvalidRequest(f"could not parse 'end' parameter: {exc}") from None
    start = min(end, now_ns) - since
    if params.get("start"):
        try:
            start = parse_timestamp_ns(params["start"])
        except ValueError as exc:
            raise InvalidRequest(f"could not parse 'start' parameter: {exc}") from None
    if end <= start:
        raise InvalidRequest(f"end must be greater than start. received start={start} end={end}")
    if end - start > MAX_DURATION_NS:
        raise InvalidRequest(
            f"metrics query time range exceeds the maximum allowed duration of 24h0m0s. "
            f"received start={start} end={end}"
        )
    return start, end


def _bounded_int(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f'invalid {name}: strconv.ParseUint: parsing "{raw}": invalid syntax') from None
    if value < 0:
        raise InvalidRequest(f"invalid {name}: must not be negative")
    return value


def parse_query_range(params: Mapping[str, str], now_ns: int, end_cutoff_ns: int = 0) -> MetricsParams:
    """`end_cutoff_ns` (Tempo 3.0's `query_end_cutoff`): an end after `now - cutoff` is clamped there and
    floored to a step boundary (Tempo's AlignEndToLeft), so the last, still-filling interval is left out."""
    query = _query(params)
    start, end = _bounds(params, now_ns)
    step = parse_step_ns(params["step"]) if params.get("step") else default_step_ns(start, end)
    if step <= 0:
        raise InvalidRequest("zero or negative query resolution step widths are not accepted. Try a positive integer")
    if end_cutoff_ns > 0 and end > now_ns - end_cutoff_ns:
        end = now_ns - end_cutoff_ns
        end -= end % step
        if end <= start:
            raise InvalidRequest(QUERY_WINDOW_WITHIN_CUTOFF)
    if (end - start) / step > MAX_POINTS:
        raise InvalidRequest(
            f"step of {step / SECOND:g}s is too small, the max number of points is {MAX_POINTS} "
            f"(range {(end - start) / SECOND:g}s / step must be <= {MAX_POINTS})"
        )
    exemplars = min(_bounded_int(params, "exemplars", MAX_EXEMPLARS), MAX_EXEMPLARS)
    max_series = _bounded_int(params, "maxSeries", DEFAULT_MAX_SERIES)
    return MetricsParams(query, start, end, step, exemplars, max_series, instant=False)


def parse_query_instant(params: Mapping[str, str], now_ns: int, end_cutoff_ns: int = 0) -> MetricsParams:
    """With `end_cutoff_ns`, an end after `now - cutoff` moves back by the fewest whole seconds that put it
    at or before the cutoff (Tempo's clampInstantQueryEnd: whole seconds keep the range stable)."""
    query = _query(params)
    start, end = _bounds(params, now_ns)
    cutoff = now_ns - end_cutoff_ns
    if end_cutoff_ns > 0 and end > cutoff:
        end -= -(-(end - cutoff) // SECOND) * SECOND
        if end <= start:
            raise InvalidRequest(QUERY_WINDOW_WITHIN_CUTOFF)
    max_series = _bounded_int(params, "maxSeries", DEFAULT_MAX_SERIES)
    return MetricsParams(query, start, end, end - start, 0, max_series, instant=True)

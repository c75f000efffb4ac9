"""Test data from Tempo itself (`../shared/conformance/` beside the checkout).

CI lays it next to the checkout and runs every test that reads it. A fresh clone may not have it: then
those tests skip with one line naming the missing file, and everything else runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2] / "shared" / "conformance"
FIXTURE_CASES = ROOT / "traceql" / "fixture-cases.yaml"
TRACEQL_EXAMPLES = ROOT / "traceql" / "test_examples.yaml"


def missing_reason(path: Path) -> str:
    return f"conformance data missing: {path} (test data from Tempo, laid beside the checkout as ../shared)"


# libyaml's safe loader when PyYAML has it: the same documents as yaml.safe_load, parsed ~8x faster
# (fixture-cases.yaml is read by three unit test modules at import).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> dict:
    """The file's YAML, or {} when it is absent (the tests that need it skip through `requires`/`params`)."""
    return yaml.load(path.read_text(), Loader=_SAFE_LOADER) if path.exists() else {}


def requires(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists(), reason=missing_reason(path))


def params(path: Path, items: Sequence[Any], ids: Callable[[int, Any], str] | None = None) -> list[Any]:
    """`items` as pytest parameters, or one skipped parameter naming the missing file."""
    if not path.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=missing_reason(path)), id="no-conformance-data")]
    return [pytest.param(item, id=ids(i, item) if ids else None) for i, item in enumerate(items)]

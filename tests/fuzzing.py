"""How many examples the property-based (hypothesis) tests try. Both lanes fuzz; the quick one tries fewer.

- `scripts/test` (what CI runs) uses hypothesis' default profile: every test tries its full count.
- `scripts/test --quick` passes `--hypothesis-profile=quick` (registered in tests/conftest.py): every test
  tries a tenth of its count, at least 10, which keeps tests/unit under 30 s for a contributor (figures:
  CONTRIBUTING.md).

A test names its full count through `examples()`: `@settings(max_examples=examples(300), ...)`.
"""

from __future__ import annotations

from hypothesis import settings

QUICK = "quick"
QUICK_DIVISOR = 10
QUICK_MINIMUM = 10


def examples(full: int) -> int:
    """`full` in the full run; under the quick profile a tenth of it (at least QUICK_MINIMUM, at most `full`)."""
    if settings.get_current_profile_name() != QUICK:
        return full
    return min(full, max(QUICK_MINIMUM, full // QUICK_DIVISOR))

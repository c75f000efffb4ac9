"""Debian's chromium driven by Playwright for the web UI tests.

Playwright's own browser download is not reachable here, so the tests launch the system Chromium
(`/usr/bin/chromium`, installed by scripts/install-test-services via apt-get). When it is missing the
tests skip with the reason, except under CI (CI=true), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("TEMPO_LITE_UI_ARTIFACTS", REPO / "test-artifacts" / "ui"))


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def require_browser() -> str:
    """The Chromium executable, or skip (fail under CI) with the reason."""
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[test]')"
    path = chromium_path()
    if reason is None and path is None:
        reason = "chromium is not installed (scripts/install-test-services installs it with apt-get)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        print(f"\nskipping web UI browser tests: {reason}")
        pytest.skip(reason)
    assert path is not None
    return path


def launch_args() -> list[str]:
    return ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []

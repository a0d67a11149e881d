"""The repository's copy of the shared test inputs matches the shared originals."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_CASES = Path(__file__).resolve().parents[1] / "cases"
SHARED_CASES = Path(__file__).resolve().parents[3] / "shared" / "cases"


@pytest.mark.skipif(not SHARED_CASES.is_dir(), reason="no shared/ beside this clone")
def test_copied_cases_match_the_shared_originals() -> None:
    shared = {p.relative_to(SHARED_CASES): p.read_bytes() for p in SHARED_CASES.rglob("*.*")}
    copied = {p.relative_to(REPO_CASES): p.read_bytes() for p in REPO_CASES.rglob("*.*")}

    assert copied == shared

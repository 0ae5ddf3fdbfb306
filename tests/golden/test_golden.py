"""What `--dry-run` says tpuctl would send, for every recipe in recipes/ and a few create
variants, compared with the transcripts under tests/golden/. A difference is either a bug or
an intended change: then `python -m tests.golden.regen` and review the diff."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from tests.golden.cases import GOLDEN, cases, path, recipes, transcript

REGEN = "python -m tests.golden.regen"


@pytest.mark.parametrize("name", sorted(cases()))
def test_dry_run_transcript_is_the_golden_one(name: str, tmp_path: Path) -> None:
    code, out, err = transcript(name, tmp_path)
    assert code == 0, err
    assert path(name).exists(), f"no golden transcript for {name}: run `{REGEN}`"
    want = path(name).read_text()
    if out != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), out.splitlines(True),
                                            f"golden/{name}.txt", "now"))
        pytest.fail(f"{name}: the dry run changed (if intended: `{REGEN}`)\n{diff}")
    assert not (tmp_path / "home" / ".tpuctl").exists()  # a dry run writes nothing either


def test_every_recipe_has_a_golden_transcript_and_none_is_stale() -> None:
    assert recipes(), "no recipes found"
    want = {path(n) for n in cases()}
    assert {path(f"up-{r.stem}") for r in recipes()} <= want
    stale = sorted(p.name for p in set(GOLDEN.glob("*.txt")) - want)
    assert stale == [], f"golden files without a case: {stale} (`{REGEN}` removes them)"

"""Atomic output folders: all or nothing, and no debris from a run that was killed."""

import pytest

from acsa.storage.files import atomic_output_dir


def test_success_replaces_the_previous_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with atomic_output_dir(out) as work:
        (work / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failure_keeps_the_previous_output_and_removes_the_partial_one(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_output_dir(out) as work:
        (work / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert (out / "old.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_debris_of_a_killed_run_is_removed(tmp_path):
    stale = tmp_path / ".out.tmp-99999"
    stale.mkdir()
    (stale / "partial").write_text("x")
    with atomic_output_dir(tmp_path / "out") as work:
        (work / "a").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

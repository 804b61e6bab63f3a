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


# ---- concurrent runs and badly timed kills (issue 13, item 5) ----------------------------------------------


def hold(out, tmp_path):
    """Another process inside atomic_output_dir(out), writing, until killed; returns it once it is inside."""
    import subprocess
    import sys

    from stage_runs import subprocess_env

    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from acsa.storage.files import atomic_output_dir\n"
        f"with atomic_output_dir(Path({str(out)!r})) as work:\n"
        "    (work / 'half.txt').write_text('writing')\n"
        "    print('inside', flush=True)\n"
        "    time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=subprocess_env(), cwd=tmp_path
    )
    assert holder.stdout.readline().strip() == "inside"
    return holder


def dead_pid():
    """The id of a process that has exited."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_second_run_into_the_same_folder_stops_at_once(tmp_path):
    """The probe: a second prepare into the same --out deleted the first one's temporary folder."""
    out = tmp_path / "out"
    holder = hold(out, tmp_path)
    try:
        theirs = tmp_path / f".out.tmp-{holder.pid}"
        with pytest.raises(OSError, match=f"{out}: another run is writing it"):
            with atomic_output_dir(out):
                pass
        assert (theirs / "half.txt").read_text() == "writing"  # the first run's work is untouched
    finally:
        holder.kill()
        holder.wait()
    with atomic_output_dir(out) as work:  # the lock died with its holder
        (work / "a").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the dead holder's folder is cleared


def test_a_second_prepare_is_one_line(tmp_path, capsys):
    from fixtures_benchmarks import write_cuhk_pedes
    from stage_runs import cli_error, stage_args

    from acsa import prepare

    write_cuhk_pedes(tmp_path / "bench")
    out = tmp_path / "prepared"
    holder = hold(out, tmp_path)
    try:
        error = cli_error(prepare.main, [*stage_args(tmp_path / "bench"), "--out", str(out)], capsys)
        assert error == f"error: {out}: another run is writing it (it holds {tmp_path / '.prepared.lock'})"
    finally:
        holder.kill()
        holder.wait()


def test_only_the_leftovers_of_dead_runs_are_removed(tmp_path):
    import subprocess
    import sys

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        for pid in (alive.pid, dead_pid()):
            (tmp_path / f".out.tmp-{pid}").mkdir()
        with atomic_output_dir(tmp_path / "out") as work:
            (work / "a").write_text("a")
        assert sorted(p.name for p in tmp_path.iterdir()) == [f".out.tmp-{alive.pid}", "out"]
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.parametrize("fails", [False, True])
def test_an_interrupted_swap_is_recovered(tmp_path, fails):
    """The probe: a kill between the two renames left OUT missing and `.OUT.old-PID` holding it, forever."""
    old = tmp_path / f".out.old-{dead_pid()}"
    old.mkdir()
    (old / "previous.txt").write_text("previous")
    (tmp_path / f".out.tmp-{old.name.split('-')[-1]}").mkdir()  # the finished new output it was swapping in
    out = tmp_path / "out"
    if fails:
        with pytest.raises(RuntimeError), atomic_output_dir(out):
            raise RuntimeError("boom")
        assert (out / "previous.txt").read_text() == "previous"
    else:
        with atomic_output_dir(out) as work:
            (work / "new.txt").write_text("new")
        assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_kill_after_the_swap_leaves_nothing(tmp_path):
    """Killed after the second rename: OUT is the new output; the previous one, renamed away, is removed."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "new.txt").write_text("new")
    old = tmp_path / f".out.old-{dead_pid()}"
    old.mkdir()
    with atomic_output_dir(out) as work:
        (work / "newer.txt").write_text("newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in out.iterdir()] == ["newer.txt"]


def test_atomic_output_file(tmp_path):
    from acsa.storage.files import atomic_output_file

    target = tmp_path / "sheet.png"
    target.write_text("previous")
    with pytest.raises(RuntimeError), atomic_output_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["sheet.png"]
    with atomic_output_file(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["sheet.png"]
    blocked = tmp_path / "a-file" / "sheet.png"
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(OSError), atomic_output_file(blocked):
        pytest.fail("the body must not run")

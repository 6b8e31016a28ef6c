"""A results store that cannot be used (not SQLite, damaged, truncated, read-only, unreadable, a
folder, busy) gives one line naming the file and what to do: never an sqlite3 traceback. Several
processes writing one run into one store at once is not a failure (see test_eval.py for two real
evaluations)."""

import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from unprivileged import as_unprivileged, can, give_to_unprivileged, shared_dir
from vlmzoo.cli import main
from vlmzoo.errors import VlmzooError
from vlmzoo.evaluation.store import Score, Store, StoredPrediction


def _p(sid: str, pos: int, text: str = "x") -> StoredPrediction:
    return StoredPrediction(sid, pos, text, text * 50, 0.1, None, {"id": sid, "question": "q" * 300})


def _good_store(path: Path, samples: int = 200) -> Path:
    with Store(path) as store:
        store.open_run("run1", "m", "b", {"task": "ask"}, samples)
        for i in range(0, samples, 10):
            store.add_predictions("run1", [_p(f"s{j}", j) for j in range(i, i + 10)])
        store.put_scores("run1", [Score("acc", 0.5, 0.4, 0.6, samples, "ok", None)], {})
        store.mark_finished("run1")
    assert path.stat().st_size > 100_000
    return path


def _one_line_naming(error: Exception, path: Path, *words: str) -> str:
    text = str(error)
    assert isinstance(error, VlmzooError), repr(error)
    assert "\n" not in text and str(path) in text, text
    assert "--store" in text, text  # what to do instead
    for w in words:
        assert w in text, text
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__), \
        "the sqlite3 error is not chained in"
    return text


def _every_use(path: Path) -> None:
    """Open the store and use it as eval, compare and report do."""
    with Store(path) as store:
        for run in store.runs():
            store.predictions(run.run_id)
            store.scores(run.run_id)
            store.sample_scores(run.run_id, "acc")
        store.open_run("run2", "m", "b", {}, 1)
        store.add_predictions("run2", [_p("a", 0)])


# -- not a SQLite file, damaged, truncated ---------------------------------------------------------


def test_garbage_bytes_are_not_a_sqlite_database(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(5000))
    with pytest.raises(VlmzooError) as caught:
        Store(junk)
    _one_line_naming(caught.value, junk, "not a SQLite database")
    assert junk.read_bytes() and not (tmp_path / "junk.db-wal").exists()


def test_a_sqlite_file_of_another_program_is_not_taken_over(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE contacts (name TEXT)")
    with pytest.raises(VlmzooError) as caught:
        Store(other)
    _one_line_naming(caught.value, other, "not a vlmzoo results store", "contacts")
    with sqlite3.connect(other) as db:  # left as it was: no vlmzoo tables written into it
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["contacts"]


@pytest.mark.parametrize("keep", [50, 100, 4096, 20_000, "half"])
def test_a_truncated_store_is_named_as_damaged(tmp_path, keep):
    path = _good_store(tmp_path / "r.db")
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2 if keep == "half" else keep)
    with pytest.raises(VlmzooError) as caught:
        _every_use(path)
    _one_line_naming(caught.value, path, "damaged")


def test_damage_found_while_reading_is_named_too(tmp_path):
    """A store whose header is fine but whose prediction pages are overwritten: opening works,
    reading the predictions (what compare and report do) finds the damage."""
    path = _good_store(tmp_path / "r.db")
    with open(path, "r+b") as f:
        f.seek(4096 * 10)
        f.write(os.urandom(4096 * 4))
    with Store(path) as store:
        (run,) = store.runs()
        with pytest.raises(VlmzooError) as caught:
            store.predictions(run.run_id)
    _one_line_naming(caught.value, path, "damaged")
    res = CliRunner().invoke(main, ["compare", "--store", str(path)])
    assert res.exit_code == 2 and "damaged" in res.output and "Traceback" not in res.output, res.output


def test_the_cli_says_it_in_one_line(tmp_path, tiny):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    for command in (["eval", "--models", str(tiny["clip"]), "--benchmark", "sample-classify", "--limit", "1"],
                    ["compare"], ["report", "--out", str(tmp_path / "r.html")]):
        res = CliRunner().invoke(main, [*command, "--store", str(junk)])
        assert res.exit_code == 2, res.output
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), res.output
        assert "not a SQLite database" in lines[0] and str(junk) in lines[0]
    assert not (tmp_path / "r.html").exists()


# -- a folder, a path that cannot be made ----------------------------------------------------------


def test_a_folder_given_as_the_store(tmp_path, tiny):
    with pytest.raises(VlmzooError) as caught:
        Store(tmp_path)
    _one_line_naming(caught.value, tmp_path, "is a folder")
    res = CliRunner().invoke(main, ["eval", "--models", str(tiny["clip"]), "--benchmark", "sample-classify",
                                    "--limit", "1", "--store", str(tmp_path)])
    assert res.exit_code == 2 and "is a folder" in res.output and "Traceback" not in res.output, res.output


def test_a_store_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    path = tmp_path / "afile" / "r.db"
    with pytest.raises(VlmzooError) as caught:
        Store(path)
    _one_line_naming(caught.value, path, "cannot create")


# -- permissions (as root, the blocks run as nobody: see unprivileged.py) ---------------------------


@pytest.fixture
def open_dir():
    with shared_dir() as folder:
        yield folder


def test_a_read_only_store_reads_but_refuses_writes_clearly(open_dir):
    path = _good_store(open_dir / "r.db")
    give_to_unprivileged(path)
    path.chmod(0o444)
    with as_unprivileged():
        assert not can(path, os.W_OK)  # the premise: this process really cannot write it
        with Store(path) as store:  # compare and report only read: they work
            (run,) = store.runs()
            assert len(store.predictions(run.run_id)) == 200
            for write in (lambda: store.open_run("run2", "m", "b", {}, 1),
                          lambda: store.add_predictions("run1", [_p("new", 999)]),
                          lambda: store.put_scores("run1", [], {}),
                          lambda: store.mark_finished("run1")):
                with pytest.raises(VlmzooError) as caught:
                    write()
                _one_line_naming(caught.value, path, "read-only")
    path.chmod(0o644)
    with Store(path) as store:  # nothing was half-written
        assert [r.run_id for r in store.runs()] == ["run1"] and len(store.done_ids("run1")) == 200


def test_a_store_in_a_read_only_folder(open_dir):
    folder = open_dir / "ro"
    folder.mkdir()
    existing = _good_store(folder / "r.db")
    give_to_unprivileged(existing)
    give_to_unprivileged(folder)
    folder.chmod(0o555)
    try:
        with as_unprivileged():
            assert not can(folder, os.W_OK)
            with pytest.raises(VlmzooError) as caught:
                Store(folder / "new.db")
            _one_line_naming(caught.value, folder / "new.db", "cannot create")
            with pytest.raises(VlmzooError) as caught:
                _every_use(existing)
            _one_line_naming(caught.value, existing, "read-only")
    finally:
        folder.chmod(0o755)


def test_an_unreadable_store(open_dir):
    path = _good_store(open_dir / "r.db")
    give_to_unprivileged(path)
    path.chmod(0o000)
    with as_unprivileged():
        assert not can(path, os.R_OK)
        with pytest.raises(VlmzooError) as caught:
            Store(path)
        _one_line_naming(caught.value, path, "cannot be read")


# -- busy ------------------------------------------------------------------------------------------


def test_a_store_held_longer_than_the_busy_timeout_is_named(tmp_path, monkeypatch):
    from vlmzoo.evaluation import store as store_module

    path = _good_store(tmp_path / "r.db")
    monkeypatch.setattr(store_module, "BUSY_SECONDS", 0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a long write
    try:
        with Store(path) as store:
            assert store.done_ids("run1")  # readers are not blocked (WAL)
            with pytest.raises(VlmzooError) as caught:
                store.add_predictions("run1", [_p("late", 500)])
            _one_line_naming(caught.value, path, "busy")
    finally:
        holder.rollback()
        holder.close()


def test_a_prediction_already_stored_counts_as_stored(tmp_path):
    """Two writers of one run (two `vlmzoo eval` at once) store each sample once, whoever is first."""
    path = tmp_path / "r.db"
    with Store(path) as a, Store(path) as b:
        a.open_run("run1", "m", "b", {"k": 1}, 3)
        b.open_run("run1", "m", "b", {"k": 1}, 3)  # the second open keeps the run as it is
        a.add_predictions("run1", [_p("s0", 0, "first"), _p("s1", 1, "first")])
        b.add_predictions("run1", [_p("s1", 1, "second"), _p("s2", 2, "second")])  # s1: already there
        assert [(p.sample_id, p.prediction) for p in a.predictions("run1")] == \
            [("s0", "first"), ("s1", "first"), ("s2", "second")]
        assert len(a.runs()) == 1

"""The results store: whole batches or nothing, one row per sample, re-scoring replaces scores."""

import sqlite3

import pytest

from vlmzoo.errors import VlmzooError
from vlmzoo.evaluation.store import Score, Store, StoredPrediction


def _p(sid: str, pos: int, text: str = "x") -> StoredPrediction:
    return StoredPrediction(sid, pos, text, text, 0.1, None, {"id": sid})


def test_batches_are_atomic_and_samples_unique(tmp_path):
    with Store(tmp_path / "r.db") as store:
        store.open_run("run1", "m", "b", {"k": 1}, 4)
        store.add_predictions("run1", [_p("a", 0), _p("b", 1)])
        broken = StoredPrediction("d", 3, "x", "x", None, None, {"id": "d"})  # no seconds: a row the table refuses
        with pytest.raises(sqlite3.IntegrityError):
            store.add_predictions("run1", [_p("c", 2), broken])  # the whole batch is refused, "c" included
        assert store.done_ids("run1") == {"a", "b"}
        # a sample already stored (another process of the same run got there first) counts as
        # stored: the rest of the batch goes in, the stored row is kept as it was
        store.add_predictions("run1", [_p("c", 2), _p("a", 0, "other")])
        assert [(p.sample_id, p.prediction) for p in store.predictions("run1")] == [("a", "x"), ("b", "x"), ("c", "x")]
        # opening the same run again keeps it (resume), it does not reset it
        store.open_run("run1", "m", "b", {"k": 1}, 4)
        assert store.done_ids("run1") == {"a", "b", "c"}


def test_scores_are_replaced_on_rescoring(tmp_path):
    with Store(tmp_path / "r.db") as store:
        store.open_run("run1", "m", "b", {}, 1)
        store.put_scores("run1", [Score("acc", 0.5, 0.4, 0.6, 1, "ok", None)], {"acc": {"a": 0.5}})
        store.put_scores("run1", [Score("acc", 0.7, 0.6, 0.8, 1, "ok", None),
                                  Score("spice", None, None, None, 1, "unavailable", "needs its jar")],
                         {"acc": {"a": 0.7}})
        assert [(s.metric, s.value) for s in store.scores("run1")] == [("acc", 0.7), ("spice", None)]
        assert store.sample_scores("run1", "acc") == {"a": 0.7}


def test_survives_reopening_and_reads_while_writing(tmp_path):
    path = tmp_path / "r.db"
    writer = Store(path)
    writer.open_run("run1", "m", "b", {}, 2)
    writer.add_predictions("run1", [_p("a", 0)])
    reader = Store(path)  # a second connection (a report) sees committed batches
    assert reader.done_ids("run1") == {"a"}
    writer.close()
    reader.close()
    with Store(path) as again:
        assert again.run("run1").samples == 2 and again.done_ids("run1") == {"a"}


def test_bad_store_paths_are_named(tmp_path):
    with pytest.raises(VlmzooError, match="is a folder"):
        Store(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(VlmzooError, match="not a SQLite database"):
        Store(junk)
    with Store(tmp_path / "r.db") as store, pytest.raises(VlmzooError, match="no run"):
        store.run("nope")

"""The per-enterprise use record on tiny inputs: formats, numbering, compaction, reports, and
that `audit verify` finds every kind of edit to it."""
from __future__ import annotations

import numpy as np
import pytest

from fedcredit.datasets import make_credit_data
from fedcredit.errors import InvalidInput
from fedcredit.holder import audit, store, usecodec, uses


@pytest.fixture(scope="module")
def codes() -> list[str]:
    _, holder = make_credit_data(rows=400, seed=3, overlap=0.9)
    return sorted(holder["uscc"].tolist())


@pytest.fixture
def con(tmp_path):
    c = store.connect(tmp_path / "holder.db", create=True)
    yield c
    c.close()


class Clock:
    """The audit log's clock, set by the test (records on chosen days)."""

    def __init__(self, monkeypatch):
        self.now = "2026-03-01T09:00:00.000000Z"
        monkeypatch.setattr(audit, "now_iso", lambda: self.now)

    def day(self, day: str, hour: int = 9) -> None:
        self.now = f"{day}T{hour:02d}:00:00.000000Z"


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


def rec(con, op, ids=None, bank="bank-a", session="s1", detail="", purpose="credit"):
    audit.SqliteAuditor(con).record(bank=bank, purpose=purpose, operation=op,
                                    enterprises=len(ids or []), session=session,
                                    detail=detail, ids=ids)
    return con.execute("SELECT MAX(seq) FROM audit_log").fetchone()[0]


def verify_problem(con) -> tuple[str, int | None]:
    r = audit.verify(con)
    return ("" if r.ok else r.problem), r.bad_seq


# -- formats ----------------------------------------------------------------------------------
def test_varints_round_trip_small_and_huge_values():
    rng = np.random.default_rng(0)
    for top in (2, 200, 1 << 20, 1 << 40, (1 << 63) - 1):
        v = rng.integers(0, top, 500, dtype=np.uint64)
        v[:2] = [0, top - 1]
        raw, size = usecodec._varints(v)
        assert raw.size == int(size.sum())
        assert np.array_equal(usecodec._unvarints(raw.tobytes()).astype(np.uint64), v)
    with pytest.raises(InvalidInput, match="ends inside a number"):
        usecodec._unvarints(b"\x05\x85")


def test_a_set_is_searchable_as_stored_and_one_enterprise_costs_five_bytes():
    numbers = np.array([0, 3, 17, 1 << 20, (1 << 32) - 1])
    blob = usecodec.encode_set(numbers)
    assert len(blob) == 1 + 4 * numbers.size and len(usecodec.encode_set(np.array([9]))) == 5
    assert np.array_equal(usecodec.decode_set(blob), numbers)
    assert [usecodec.holds(blob, x) for x in (0, 3, 4, 1 << 20, (1 << 32) - 1, 1 << 33)] == \
        [True, True, False, True, True, False]
    beyond = np.array([5, 1 << 33, (1 << 40) + 7])  # past 2**32: deltas and varints
    big = usecodec.encode_set(beyond)
    assert big[0] != usecodec._U32 and np.array_equal(usecodec.decode_set(big), beyond)
    assert usecodec.holds(big, 1 << 33) and not usecodec.holds(big, 6)
    for bad in (blob[:-1], bytes([9]) + blob[1:], usecodec.encode_set(np.array([5, 3]))):
        with pytest.raises(InvalidInput):
            usecodec.decode_set(bad)


def test_the_fast_digest_equals_the_recording_one(codes):
    chosen = codes[:50]
    assert usecodec.digest(np.array(chosen, dtype="S18")) == usecodec.digest(chosen)
    assert usecodec.digest(chosen) != usecodec.digest(chosen[:-1])
    assert usecodec.digest(chosen) != usecodec.digest(chosen[1:] + chosen[:1])  # order counts
    d = usecodec.digest(chosen)
    assert usecodec.tagged_digest(usecodec.tag("ids=3", d)) == d
    assert usecodec.tagged_digest(usecodec.tag("", d)) == d
    assert usecodec.tagged_digest("ids=3") is None


def test_postings_rebuild_every_set_and_answer_one_enterprise():
    rng = np.random.default_rng(1)
    sets = [np.sort(rng.choice(5000, size, replace=False)) for size in (1, 40, 700, 3000)]
    sets.append(np.array([4999]))
    blocks = usecodec.postings(sets)
    assert sorted(blocks) == sorted({int(x) >> usecodec.BLOCK_BITS for s in sets for x in s})
    pairs = [usecodec.block_pairs(b, k, len(sets)) for k, b in blocks.items()]
    ents = np.concatenate([p[0] for p in pairs])
    ords = np.concatenate([p[1] for p in pairs])
    for k, s in enumerate(sets):
        assert np.array_equal(np.sort(ents[ords == k]), s)
    for x in (0, 17, 1023, 1024, 4999):
        b, off = x >> usecodec.BLOCK_BITS, x & 1023
        want = [k for k, s in enumerate(sets) if x in s]
        got = usecodec.lookup(blocks[b], off, len(sets)).tolist() if b in blocks else []
        assert got == want, x
    with pytest.raises(InvalidInput, match="malformed"):
        usecodec.lookup(blocks[0], 0, 2)  # read with the wrong set count


def test_postings_rows_group_blocks_and_give_each_back(monkeypatch):
    monkeypatch.setattr(usecodec, "ROW_BYTES", 100)
    blocks = {b: usecodec._pack(bytes([1 + b % 5]) * (30 + b)) for b in (0, 1, 4, 9, 10, 300)}
    rows = usecodec.postings_rows(blocks)
    assert len(rows) > 1 and rows[0][0] == 0
    back: dict[int, bytes] = {}
    for first, row in rows:
        got = usecodec.row_blocks(row, first)
        assert min(got) == first
        back.update(got)
    assert back == blocks
    first, row = rows[0]
    for bad in (row[:-1], b"\x00" + row[1:], row + b"\x01"):
        with pytest.raises(InvalidInput, match="postings row"):
            usecodec.row_blocks(bad, first)


# -- recording ---------------------------------------------------------------------------------
def test_enterprises_are_numbered_once_whatever_the_request_size(con, codes):
    with store.write(con):
        a = uses.number(con, codes[:5] + codes[:2])  # repeats count once
    assert a.numbers.tolist() == [0, 1, 2, 3, 4]
    with store.write(con):
        b = uses.number(con, codes[3:300])  # > 256 ids: the json_each path
    assert b.numbers.tolist() == list(range(3, 300))
    assert b.digest == usecodec.digest(codes[3:300])
    with store.write(con):
        c = uses.number(con, [codes[299], codes[2]])
    assert c.numbers.tolist() == [2, 299]
    assert uses.number(con, None) is None and uses.number(con, []) is None
    with pytest.raises(InvalidInput, match="not a string"):
        uses.number(con, [codes[0], 7])


def test_the_record_carries_the_digest_and_the_set_is_kept(con, codes):
    seq = rec(con, "align", codes[:10], detail="withdrawn=2")
    detail = con.execute("SELECT detail FROM audit_log WHERE seq = ?", (seq,)).fetchone()[0]
    assert detail.startswith("withdrawn=2 uses=")
    row = con.execute("SELECT n, ids, digest FROM use_sets WHERE seq = ?", (seq,)).fetchone()
    assert row[0] == 10 and len(row[1]) == 41 and usecodec.tagged_digest(detail) == row[2]
    plain = rec(con, "tree_start", None, detail="tree=0")
    assert con.execute("SELECT COUNT(*) FROM use_sets WHERE seq = ?", (plain,)).fetchone()[0] == 0
    assert rec(con, "predict", [], detail="ids=0") and con.execute(
        "SELECT COUNT(*) FROM use_sets").fetchone()[0] == 1  # no enterprise, no set
    assert verify_problem(con) == ("", None)


def test_the_set_and_its_record_are_written_together_or_not_at_all(con, codes):
    rec(con, "align", codes[:3])
    con.execute("CREATE TRIGGER refuse BEFORE INSERT ON use_sets "
                "BEGIN SELECT RAISE(ABORT, 'no room for the set'); END")
    with pytest.raises(Exception, match="no room"):
        rec(con, "predict", codes[5:8])
    assert con.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 1
    assert con.execute("SELECT COUNT(*) FROM enterprise_index").fetchone()[0] == 3
    assert verify_problem(con) == ("", None)


# -- compaction and reports ---------------------------------------------------------------------
def _history(con, clock, codes):
    """Three days of uses by two banks; returns the seqs."""
    seqs = {}
    clock.day("2026-03-01")
    seqs["align"] = rec(con, "align", codes[:100], session="t1")
    seqs["train"] = rec(con, "boost_start", codes[10:90], session="t1")
    rec(con, "model_finish", None, session="t1", detail="model=sb-1")
    clock.day("2026-03-02")
    con.execute("INSERT INTO sessions VALUES ('sc1', 'bank-a', 'credit', 'score', 'sb-1', 0, 0, "
                "'closed')")
    seqs["score"] = rec(con, "predict", [codes[20]], session="sc1", detail="ids=1 trees=2")
    seqs["lr"] = rec(con, "lr_start", codes[50:60], bank="bank-b", session="l1")
    rec(con, "lr_finish", None, bank="bank-b", session="l1", detail="model=lr-7")
    clock.day("2026-03-03")
    seqs["woe"] = rec(con, "woe_stats", codes[15:25], bank="bank-b", session="w1",
                      detail="binning=woe-3 features=4 bins=20")
    seqs["loan"] = rec(con, "loan_report", [codes[20]], bank="bank-b", session="")
    return seqs


def test_report_lists_every_use_with_kind_bank_and_model(con, clock, codes):
    seqs = _history(con, clock, codes)
    got = uses.report(con, codes[20])
    assert [(r["kind"], r["bank"], r["model"], r["audit_seq"]) for r in got] == [
        ("aligned", "bank-a", "sb-1", seqs["align"]),
        ("trained on", "bank-a", "sb-1", seqs["train"]),
        ("scored", "bank-a", "sb-1", seqs["score"]),
        ("trained on", "bank-b", "woe-3", seqs["woe"]),
        ("loan reported", "bank-b", "", seqs["loan"])]
    assert got[0]["time"] == "2026-03-01T09:00:00.000000Z" and got[0]["operation"] == "align"
    assert [r["model"] for r in uses.report(con, codes[55])][-1] == "lr-7"
    assert uses.report(con, codes[399]) == []  # never used, not even numbered
    assert uses.report(con, codes[95]) == uses.report(con, codes[95], since="2026-03-01")
    assert [r["kind"] for r in uses.report(con, codes[20], since="2026-03-02",
                                           until="2026-03-03")] == ["scored"]
    with pytest.raises(InvalidInput, match="not an enterprise's code"):
        uses.report(con, codes[20][:17] + "?")


def test_compaction_folds_finished_days_and_answers_the_same(con, clock, codes):
    _history(con, clock, codes)
    wanted = {u: uses.report(con, u) for u in codes[:110:7] + [codes[20]]}
    used_before = uses.enterprises_used(con)
    done = uses.compact(con, before="2026-03-03")
    assert done == {"days": 2, "segments": 2, "sets": 4, "uses": 191}
    assert con.execute("SELECT day FROM use_sets").fetchall() == [("2026-03-03",)] * 2
    assert uses.compact(con, before="2026-03-03")["sets"] == 0  # nothing left to fold
    assert {u: uses.report(con, u) for u in wanted} == wanted
    assert uses.enterprises_used(con).equals(used_before)
    assert uses.compact(con, before="2026-03-04", max_days=1)["days"] == 1
    assert con.execute("SELECT COUNT(*) FROM use_sets").fetchone()[0] == 0
    assert {u: uses.report(con, u) for u in wanted} == wanted
    assert verify_problem(con) == ("", None)


def test_a_busy_day_is_cut_into_segments_of_bounded_size(con, clock, codes, monkeypatch):
    monkeypatch.setattr(uses, "MAX_SEGMENT_SETS", 3)
    clock.day("2026-03-01")
    for k in range(7):
        rec(con, "predict", [codes[k], codes[k + 1]], session=f"s{k}")
    assert uses.compact(con, before="2026-03-02")["segments"] == 3
    assert [r["audit_seq"] for r in uses.report(con, codes[3])] == [3, 4]
    assert verify_problem(con) == ("", None)


def test_enterprises_used_counts_distinct_enterprises_per_bank_purpose_and_kind(con, clock,
                                                                                 codes):
    assert list(uses.enterprises_used(con).columns) == ["bank", "purpose", "kind", "uscc"]
    _history(con, clock, codes)
    uses.compact(con, before="2026-03-02")
    df = uses.enterprises_used(con)
    counts = df.groupby(["bank", "kind"]).size().to_dict()
    assert counts == {("bank-a", "aligned"): 100, ("bank-a", "trained on"): 80,
                      ("bank-a", "scored"): 1, ("bank-b", "trained on"): 20,
                      ("bank-b", "loan reported"): 1}
    assert not df.duplicated().any() and set(df["purpose"]) == {"credit"}
    later = uses.enterprises_used(con, since="2026-03-02")
    assert set(later["kind"]) == {"scored", "trained on", "loan reported"}


# -- tamper evidence ----------------------------------------------------------------------------
@pytest.mark.parametrize("compacted", [False, True])
def test_verify_names_the_record_whose_use_set_was_edited(con, clock, codes, compacted):
    seqs = _history(con, clock, codes)
    if compacted:
        uses.compact(con, before="2026-03-04")
        rid, row = con.execute("SELECT id, data FROM use_postings ORDER BY id LIMIT 1"
                               ).fetchone()
        blocks = usecodec.row_blocks(row, rid & ((1 << uses.SEG_SHIFT) - 1))
        keys = usecodec._keys(blocks[0], 2)  # drop the last use of block 0
        blocks[0] = usecodec._pack(usecodec._varints(np.diff(keys[:-1], prepend=0))[0].tobytes())
        ((_, forged),) = usecodec.postings_rows(blocks)
        con.execute("UPDATE use_postings SET data = ? WHERE id = ?", (forged, rid))
    else:
        numbers = uses.decode_set(con.execute("SELECT ids FROM use_sets WHERE seq = ?",
                                              (seqs["train"],)).fetchone()[0])
        con.execute("UPDATE use_sets SET ids = ? WHERE seq = ?",
                    (usecodec.encode_set(numbers[1:]), seqs["train"]))
    problem, seq = verify_problem(con)
    assert "does not match the digest" in problem
    assert seq == (seqs["align"] if compacted else seqs["train"])


def test_verify_finds_a_deleted_added_unreadable_or_renumbered_set(con, clock, codes):
    seqs = _history(con, clock, codes)
    uses.compact(con, before="2026-03-02")  # day 1 in a segment, the others pending
    assert verify_problem(con) == ("", None)
    con.execute("DELETE FROM use_sets WHERE seq = ?", (seqs["lr"],))
    problem, seq = verify_problem(con)
    assert seq == seqs["lr"] and "missing" in problem
    con.execute("INSERT INTO use_sets VALUES (?, '2026-03-02', 1, ?, '')",
                (seqs["lr"] + 1, usecodec.encode_set(np.array([3]))))  # lr_finish has none
    assert verify_problem(con)[1] == seqs["lr"]
    con.execute("DELETE FROM use_sets WHERE seq = ?", (seqs["lr"] + 1,))
    con.execute("INSERT INTO use_sets VALUES (?, '2026-03-02', 10, x'07', '')", (seqs["lr"],))
    assert "cannot be read" in verify_problem(con)[0]
    con.execute("DELETE FROM use_sets WHERE seq = ?", (seqs["lr"],))
    con.execute("DELETE FROM use_postings")  # the whole first day's segment
    problem, seq = verify_problem(con)
    assert seq == seqs["align"] and "does not match" in problem


def test_verify_finds_an_edited_enterprise_index(con, clock, codes):
    _history(con, clock, codes)
    uses.compact(con, before="2026-03-02")
    a, b = con.execute("SELECT uscc FROM enterprise_index WHERE idx IN (20, 21) ORDER BY idx"
                       ).fetchall()
    con.execute("UPDATE enterprise_index SET uscc = 'x' || uscc WHERE idx IN (20, 21)")
    con.execute("UPDATE enterprise_index SET uscc = ? WHERE idx = 21", a)
    con.execute("UPDATE enterprise_index SET uscc = ? WHERE idx = 20", b)
    problem, seq = verify_problem(con)
    assert seq == 1 and "enterprise index" in problem

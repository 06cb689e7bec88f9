"""The keyed audit chain (issue item 12): every record and the chain head carry an
HMAC-SHA256 under a key kept outside the store (``<tls.dir>/audit.key``), so cutting the
tail and moving ``chain_head``, or appending a record with a correct plain SHA-256, no
longer passes ``verify``. Old unkeyed stores still verify, and a keyed chain never goes back
to plain hashes."""
from __future__ import annotations

import json
import logging
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fedcredit.cli import main as cli
from fedcredit.errors import InvalidInput
from fedcredit.holder import audit, store


def fc(*args) -> int:
    return cli([str(a) for a in args])


def _records(con, k: int, prefix: str = "op") -> None:
    auditor = audit.SqliteAuditor(con)
    for i in range(k):
        auditor.record(bank="demo-bank", purpose="credit", operation=f"{prefix}{i}",
                       enterprises=i, session="s" * 32, detail=f"tree={i}")


@pytest.fixture
def keyed(tmp_path) -> Path:
    """A holder directory (init makes the key) with 1 + 6 keyed records."""
    d = tmp_path / "H"
    assert fc("holder", "init", "--dir", d, "--listen", "127.0.0.1:0") == 0
    con = store.connect(d / "holder.db")
    _records(con, 6)
    con.close()
    return d


@pytest.fixture
def unkeyed(tmp_path) -> Path:
    """A holder directory whose store was written by a fedcredit before the key: schema 1,
    no ``mac`` columns, 7 plain SHA-256 records, no key file."""
    d = tmp_path / "old"
    assert fc("holder", "init", "--dir", d, "--listen", "127.0.0.1:0") == 0
    (d / "holder.db").unlink()
    (d / "tls" / "audit.key").unlink()
    raw = sqlite3.connect(d / "holder.db")
    for stmt in store._statements(store._SCHEMA.replace(",\n    mac TEXT", "")):
        raw.execute(stmt)
    raw.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    prev = audit.GENESIS
    for seq in range(1, 8):
        values = (seq, f"2025-01-01T00:00:0{seq}.000000Z", "bank", "demo-bank", "credit",
                  f"op{seq}", seq, "s" * 32, "")
        h = audit.record_hash(prev, values)
        raw.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?,?)", (*values, prev, h))
        prev = h
    raw.execute("INSERT INTO chain_head VALUES (1, 7, ?)", (prev,))
    raw.commit()
    raw.close()
    return d


def _sql(d: Path, script: str, *args) -> None:
    con = sqlite3.connect(d / "holder.db")
    if args:
        con.execute(script, args)
    else:
        con.executescript(script)
    con.commit()
    con.close()


#: the attack of the issue: two SQL statements, no hashing
CUT_TAIL = ("DELETE FROM audit_log WHERE seq > 4; UPDATE chain_head SET seq = 4, hash = "
            "(SELECT hash FROM audit_log WHERE seq = 4)")


def _verify(d: Path, capsys, *extra) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = fc("holder", "audit", "verify", "--dir", d, *extra)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _move_key(d: Path) -> Path:
    key = d / "tls" / "audit.key"
    aside = d.parent / "audit.key.aside"
    key.rename(aside)
    return aside


# -- the key file ---------------------------------------------------------------------------------
def test_init_makes_a_0600_key_outside_the_store(keyed, capsys, tmp_path):
    key = keyed / "tls" / "audit.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    text = key.read_text()
    assert len(text) == 65 and text.endswith("\n") and bytes.fromhex(text.strip())
    con = store.connect(keyed / "holder.db")
    assert con.audit_key_file == key
    dump = "\n".join(con.iterdump())
    con.close()
    assert text.strip() not in dump, "the key is not in the store"
    # --force keeps the key (a new one would not verify the old records)
    assert fc("holder", "init", "--dir", keyed, "--force") == 0
    assert key.read_text() == text
    assert _verify(keyed, capsys)[0] == 0
    # with your own certificates the key lives in that TLS directory
    from fedcredit.holder.devca import make_dev_certs

    make_dev_certs(tmp_path / "pki", bank_names=("bank-x",))
    assert fc("holder", "init", "--dir", tmp_path / "H2", "--tls-dir", tmp_path / "pki") == 0
    assert stat.S_IMODE((tmp_path / "pki" / "audit.key").stat().st_mode) == 0o600
    assert not (tmp_path / "H2" / "tls").exists()


def test_verify_help_names_the_key():
    r = subprocess.run([sys.executable, "-m", "fedcredit.cli", "holder", "audit", "verify",
                        "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    text = r.stdout.lower()
    assert "--key-file" in text and "hmac" in text and "without the key" in text


# -- what the key adds ----------------------------------------------------------------------------
def test_a_cut_tail_is_caught_with_the_key_and_not_by_plain_hashes(keyed, unkeyed, capsys):
    # unkeyed (an old store): the two statements pass plain verification unnoticed
    assert _verify(unkeyed, capsys)[0] == 0
    _sql(unkeyed, CUT_TAIL)
    rc, out, _ = _verify(unkeyed, capsys)
    assert rc == 0 and "audit log intact: 4 records" in out
    assert "WITHOUT the audit key" in out and "NOT that its tail was not cut" in out
    # keyed: the same two statements are caught, naming the cut
    assert _verify(keyed, capsys)[0] == 0
    _sql(keyed, CUT_TAIL)
    rc, _, err = _verify(keyed, capsys)
    assert rc == 1 and "TAMPERED" in err and "cut from the end" in err
    assert "first bad record: seq=5" in err
    # an attacker who also nulls the head's MAC is caught even without the key
    _sql(keyed, "UPDATE chain_head SET mac = NULL")
    aside = _move_key(keyed)
    rc, _, err = _verify(keyed, capsys)
    assert rc == 1 and "carries no MAC" in err and "without the audit key" in err
    # ...and one who copies record 4's MAC into the head only with it
    _sql(keyed, "UPDATE chain_head SET mac = (SELECT mac FROM audit_log WHERE seq = 4)")
    assert _verify(keyed, capsys)[0] == 0, "plain hashes cannot tell"
    rc, _, err = _verify(keyed, capsys, "--key-file", aside)
    assert rc == 1 and "head's MAC" in err and "cut from the end" in err


def test_an_appended_record_with_a_plain_or_wrong_key_hash_fails(keyed, capsys, tmp_path):
    con = store.connect(keyed / "holder.db")
    good = audit.verify(con, key=audit.read_key(keyed / "tls" / "audit.key"))
    con.close()
    assert good.ok and good.keyed == good.records == 7 and good.key_checked
    anchor = f"{good.head_seq}:{good.head_hash}"
    values = [8, "2099-01-01T00:00:00.000000Z", "bank", "demo-bank", "credit", "predict",
              5, "s" * 32, "ids=5"]
    h = audit.record_hash(good.head_hash, values)
    # 1. a correct plain SHA-256, no MAC (what an old fedcredit or a forger without the
    # key writes): a keyed chain never goes back, so it fails even with --anchor
    _sql(keyed, "INSERT INTO audit_log (seq, ts, actor, bank, purpose, operation, enterprises, "
                "session, detail, prev_hash, hash, mac) VALUES (?,?,?,?,?,?,?,?,?,?,?,NULL)",
         *values, good.head_hash, h)
    _sql(keyed, "UPDATE chain_head SET seq = 8, hash = ?, mac = NULL", h)
    rc, _, err = _verify(keyed, capsys, "--anchor", anchor)
    assert rc == 1 and "carries no MAC" in err and "first bad record: seq=8" in err
    # 2. MACs made with another key, on the record and the head
    wrong = audit.create_key(tmp_path / "wrong.key")
    _sql(keyed, "UPDATE audit_log SET mac = ? WHERE seq = 8", audit.record_mac(wrong, h))
    _sql(keyed, "UPDATE chain_head SET mac = ?", audit.head_mac(wrong, 8, h))
    rc, _, err = _verify(keyed, capsys, "--anchor", anchor)
    assert rc == 1 and "MAC does not match" in err and "first bad record: seq=8" in err
    # verifying with the wrong key instead fails at the first record, saying it may be that
    rc, _, err = _verify(keyed, capsys, "--key-file", tmp_path / "wrong.key")
    assert rc == 1 and "not the key the chain was written with" in err
    assert "first bad record: seq=1" in err


def test_a_rewritten_history_is_caught_by_the_key_and_the_anchor_still_works(keyed, capsys):
    con = store.connect(keyed / "holder.db")
    r = audit.verify(con)
    con.close()
    anchor = f"{r.head_seq}:{r.head_hash}"
    assert _verify(keyed, capsys, "--anchor", anchor)[0] == 0
    # rewrite every hash consistently (and the head): plain hashes cannot tell, the key can
    con = sqlite3.connect(keyed / "holder.db")
    rows = con.execute("SELECT seq, ts, actor, bank, purpose, operation, enterprises, session, "
                       "detail FROM audit_log ORDER BY seq").fetchall()
    prev = audit.GENESIS
    for row in rows:
        row = list(row)
        if row[5] == "op2":
            row[6] = 1000
        h = audit.record_hash(prev, row)
        con.execute("UPDATE audit_log SET enterprises = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                    (row[6], prev, h, row[0]))
        prev = h
    con.execute("UPDATE chain_head SET hash = ?", (prev,))
    con.commit()
    con.close()
    rc, _, err = _verify(keyed, capsys)
    assert rc == 1 and "MAC does not match" in err and "first bad record: seq=4" in err
    aside = _move_key(keyed)
    assert _verify(keyed, capsys)[0] == 0  # without the key: only the anchor tells
    rc, _, err = _verify(keyed, capsys, "--anchor", anchor)
    assert rc == 1 and "anchor" in err
    rc, _, err = _verify(keyed, capsys, "--key-file", aside)
    assert rc == 1 and "MAC does not match" in err


# -- old stores, the migration, no downgrade ----------------------------------------------------------
def test_an_old_unkeyed_store_verifies_migrates_and_is_keyed_from_then_on(unkeyed, capsys):
    rc, out, _ = _verify(unkeyed, capsys)  # opening it migrates schema 1 -> 2
    assert rc == 0 and "audit log intact: 7 records" in out and "WITHOUT the audit key" in out
    raw = sqlite3.connect(unkeyed / "holder.db")
    assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(store.SCHEMA_VERSION)
    assert "mac" in [r[1] for r in raw.execute("PRAGMA table_info(audit_log)")]
    assert "mac" in [r[1] for r in raw.execute("PRAGMA table_info(chain_head)")]
    raw.close()
    assert not (unkeyed / "tls" / "audit.key").exists(), "verify only reads"
    # the next append makes the key and is keyed; the old records stay as they were
    con = store.connect(unkeyed / "holder.db")
    _records(con, 2, prefix="new")
    con.close()
    key = unkeyed / "tls" / "audit.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    rc, out, _ = _verify(unkeyed, capsys)
    assert rc == 0 and "audit log intact: 9 records" in out and "checked with the audit key" in out
    assert "records 1-7 predate the key" in out and "the MAC of record 8 covers them" in out
    # the first keyed record's MAC covers the old ones: rewriting them is caught
    con = sqlite3.connect(unkeyed / "holder.db")
    prev = audit.GENESIS
    for row in con.execute("SELECT seq, ts, actor, bank, purpose, operation, enterprises, "
                           "session, detail FROM audit_log ORDER BY seq").fetchall():
        row = list(row)
        if row[0] == 3:
            row[6] = 1000
        h = audit.record_hash(prev, row)
        con.execute("UPDATE audit_log SET enterprises = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                    (row[6], prev, h, row[0]))
        prev = h
    con.execute("UPDATE chain_head SET hash = ?", (prev,))
    con.commit()
    con.close()
    rc, _, err = _verify(unkeyed, capsys)
    assert rc == 1 and "MAC does not match" in err and "first bad record: seq=8" in err


def test_stripping_the_keyed_records_is_a_downgrade_the_key_catches(unkeyed, capsys):
    con = store.connect(unkeyed / "holder.db")
    _records(con, 2, prefix="new")
    con.close()
    # back to the old store's state: the keyed records deleted, the head as it was
    _sql(unkeyed, "DELETE FROM audit_log WHERE mac IS NOT NULL; UPDATE chain_head SET seq = 7, "
                  "hash = (SELECT hash FROM audit_log WHERE seq = 7), mac = NULL")
    rc, _, err = _verify(unkeyed, capsys)
    assert rc == 1 and "records written under the key were cut" in err


def test_a_keyed_chain_refuses_to_append_without_its_key(keyed, capsys):
    _move_key(keyed)
    con = store.connect(keyed / "holder.db")
    with pytest.raises(InvalidInput, match="audit key is missing"):
        _records(con, 1)
    n = con.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
    con.close()
    assert n == 7 and not (keyed / "tls" / "audit.key").exists(), "no new key, no record"
    raw = sqlite3.connect(keyed / "holder.db")  # a connection that knows no key location
    with pytest.raises(InvalidInput, match="refusing to append an unkeyed record"):
        with store.write(raw):
            audit.append(raw, actor="x", operation="forged")
    raw.close()
    rc, out, _ = _verify(keyed, capsys)
    assert rc == 0 and "WITHOUT the audit key" in out and "MACs of 7 records were not checked" \
        in out
    assert fc("holder", "audit", "verify", "--dir", keyed, "--key-file",
              keyed / "nowhere.key") == 2


# -- no key material anywhere -----------------------------------------------------------------------
def test_no_key_material_in_logs_outputs_or_the_export(tmp_path, capsys, caplog):
    d = tmp_path / "H"
    caplog.set_level(logging.DEBUG)
    assert fc("holder", "init", "--dir", d, "--listen", "127.0.0.1:0") == 0
    key_hex = (d / "tls" / "audit.key").read_text().strip()
    con = store.connect(d / "holder.db")
    _records(con, 3)
    con.close()
    texts = [capsys.readouterr().out]
    for args in (("audit", "verify"), ("audit", "export"), ("audit", "export", "--format", "csv"),
                 ("status",), ("stats",)):
        assert fc("holder", *args, "--dir", d) == 0
        out = capsys.readouterr()
        texts += [out.out, out.err]
    assert fc("holder", "audit", "export", "--dir", d, "--out", tmp_path / "e.jsonl") == 0
    exported = (tmp_path / "e.jsonl").read_text()
    rows = [json.loads(line) for line in exported.splitlines()]
    assert len(rows) == 4 and all(len(r["mac"]) == 64 for r in rows)  # MACs, so a copy checks
    texts += [exported, caplog.text, "\n".join(str(r.__dict__) for r in caplog.records)]
    key = bytes.fromhex(key_hex)
    for text in texts:
        assert key_hex not in text.lower()
        assert key.hex().upper() not in text
    assert any("audit key" in t and str(d / "tls" / "audit.key") in t for t in texts)

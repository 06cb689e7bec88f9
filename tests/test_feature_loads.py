"""Feature loads into one holder directory are serialised: two `holder load-features` at once
run one after the other, and the file the store names current is never removed (issue item
6: concurrent loads used to delete it, after which `serve` refused to start)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedcredit.cli import main as cli
from fedcredit.datasets import make_credit_data
from fedcredit.errors import ResourceLimit
from fedcredit.holder import config, features, store
from fedcredit.holder.service import HolderParty

LOAD = [sys.executable, "-m", "fedcredit.cli", "holder", "load-features"]


def fc(*args) -> int:
    return cli([str(a) for a in args])


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory) -> Path:
    _, holder = make_credit_data(rows=20_000, seed=6, overlap=0.9)
    path = tmp_path_factory.mktemp("loads-data") / "holder.csv"
    holder.to_csv(path, index=False)
    return path


@pytest.fixture
def hdir(tmp_path) -> Path:
    d = tmp_path / "H"
    assert fc("holder", "init", "--dir", d, "--listen", "127.0.0.1:0") == 0
    return d


def _start(d: Path, csv_file: Path, log: Path) -> tuple[subprocess.Popen, Path]:
    out = log.open("w")
    p = subprocess.Popen([*LOAD, "--dir", str(d), "--csv", str(csv_file), "--id-column",
                          "uscc"], stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    out.close()
    return p, log


def _check_current(d: Path) -> int:
    """The current file exists, passes read_current's checks, and a holder starts on it."""
    cfg = config.load_config(d)
    con = store.connect(cfg.db_path)
    try:
        cur = features.current(con)
        assert cur is not None and (cfg.features_dir / cur["file"]).is_file()
        frame, version = features.read_current(cfg, con)  # presence and SHA-256
        assert version == cur["version"] and len(frame) == cur["rows"]
    finally:
        con.close()
    party = HolderParty(cfg)  # what `holder serve` builds first
    try:
        assert party.features_version == version
    finally:
        party.close()
    return version


def test_two_concurrent_loads_run_one_after_the_other(hdir, csv_file, tmp_path):
    cfg = config.load_config(hdir)
    version = 0
    for rnd in range(3):
        logs = [tmp_path / f"load-{rnd}-{k}.log" for k in range(2)]
        if rnd == 0:
            # deterministic overlap: both start while the lock is held, both must wait
            with features.load_lock(cfg):
                procs = [_start(hdir, csv_file, log) for log in logs]
                deadline = time.monotonic() + 60
                while not all("waiting" in log.read_text() for log in logs):
                    assert time.monotonic() < deadline, [log.read_text() for log in logs]
                    assert all(p.poll() is None for p, _ in procs), "a load ran past the lock"
                    time.sleep(0.05)
        else:  # a free race, as the acceptance check runs it
            procs = [_start(hdir, csv_file, log) for log in logs]
        for p, log in procs:
            assert p.wait(timeout=300) == 0, log.read_text()
            assert "loaded 20000 enterprises" in log.read_text()
        got = _check_current(hdir)
        assert got == version + 2, "two loads, two versions"
        version = got
        left = sorted(p.name for p in cfg.features_dir.iterdir())
        assert len(left) == 1 and left[0].endswith(".parquet"), left
    texts = [p.read_text() for p in tmp_path.glob("load-0-*.log")]
    assert all("another `fedcredit holder load-features`" in t for t in texts)
    con = store.connect(cfg.db_path)
    loads = [r[0] for r in con.execute("SELECT detail FROM audit_log WHERE operation = "
                                       "'features_load' ORDER BY seq")]
    con.close()
    assert [int(x.split("version=")[1].split()[0]) for x in loads] == list(range(1, 7))


def test_a_load_that_cannot_get_the_lock_refuses_in_one_line(hdir, csv_file, capsys):
    cfg = config.load_config(hdir)
    assert fc("holder", "load-features", "--dir", hdir, "--csv", csv_file) == 0
    before = _check_current(hdir)
    capsys.readouterr()
    with features.load_lock(cfg):
        rc = fc("holder", "load-features", "--dir", hdir, "--csv", csv_file,
                "--lock-timeout", "0.3")
        err = capsys.readouterr().err
        assert rc == 2
        assert "waiting up to 0.3 s" in err
        last = err.strip().splitlines()[-1]
        assert last.startswith("fedcredit: error: another `fedcredit holder load-features`")
        assert "still loading" in last and "run this load again" in last
        con = store.connect(cfg.db_path)
        with pytest.raises(ResourceLimit):
            features.load_features(cfg, con, csv_file, "uscc", lock_timeout=0.1)
        con.close()
    assert _check_current(hdir) == before  # nothing changed
    assert fc("holder", "load-features", "--dir", hdir, "--csv", csv_file) == 0  # released
    assert _check_current(hdir) == before + 1


def test_the_cleanup_never_removes_the_current_file(hdir, csv_file, tmp_path):
    cfg = config.load_config(hdir)
    assert fc("holder", "load-features", "--dir", hdir, "--csv", csv_file) == 0
    # what a load killed between its file and its commit leaves: removed by the next load
    orphan = cfg.features_dir / "features-20000101T000000-deadbeef.parquet"
    orphan.write_bytes(b"half a table")
    tmp = cfg.features_dir / ".features-x.parquet.0123456789ab.tmp"
    tmp.write_bytes(b"")
    con = store.connect(cfg.db_path)
    current = features.current(con)["file"]
    # a cleanup told to keep only some other name still keeps the file the store names
    features._remove_old(cfg.features_dir, keep={current})
    assert (cfg.features_dir / current).is_file() and not orphan.exists() and not tmp.exists()
    con.close()
    # a refused load (a row rejected) changes nothing and removes nothing
    bad = tmp_path / "bad.csv"
    bad.write_text(csv_file.read_text().replace("\n9", "\nnot-an-id-9", 1))
    assert fc("holder", "load-features", "--dir", hdir, "--csv", bad) == 1
    assert _check_current(hdir) == 1

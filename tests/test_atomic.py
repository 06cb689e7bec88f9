"""fedcredit.atomic: a file is replaced whole or not at all, and no temporary file is left."""
from __future__ import annotations

import os
import stat

import pytest

from fedcredit.atomic import write_atomic, write_with


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_atomic_creates_and_replaces(tmp_path):
    path = tmp_path / "out.json"
    assert write_atomic(path, "first\n") == path
    assert path.read_text() == "first\n"
    write_atomic(str(path), b"second")  # str paths and bytes too
    assert path.read_bytes() == b"second"
    write_atomic(path, "zählt", encoding="utf-8")
    assert path.read_text(encoding="utf-8") == "zählt"
    assert _leftovers(tmp_path) == []


def test_replace_is_a_rename_not_an_overwrite(tmp_path):
    """A reader holding the old file keeps reading the old content (a new inode)."""
    path = tmp_path / "data.csv"
    write_atomic(path, "old")
    with open(path) as reader:
        write_atomic(path, "new")
        assert reader.read() == "old"
    assert path.read_text() == "new"


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_previous_content_kept_and_temp_removed_when_the_writer_raises(tmp_path, error):
    path = tmp_path / "scores.csv"
    write_atomic(path, "good\n")
    seen = []

    def writer(tmp):
        seen.append(tmp)
        tmp.write_text("half a fi")
        raise error

    with pytest.raises(type(error)):
        write_with(path, writer)
    assert path.read_text() == "good\n"
    assert seen and seen[0].parent == tmp_path and seen[0] != path
    assert not seen[0].exists()
    assert _leftovers(tmp_path) == []


def test_nothing_created_when_the_first_write_fails(tmp_path):
    def writer(tmp):
        tmp.write_text("x")
        raise ValueError("bad row")

    with pytest.raises(ValueError):
        write_with(tmp_path / "new.txt", writer)
    assert list(tmp_path.iterdir()) == []


def test_writer_that_writes_nothing_fails_cleanly(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_with(tmp_path / "never.txt", lambda tmp: None)
    assert list(tmp_path.iterdir()) == []


def test_write_with_gives_a_file_name_to_library_writers(tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"uscc": ["a", "b"], "score": [0.1, 0.9]})
    path = write_with(tmp_path / "s.csv", lambda tmp: df.to_csv(tmp, index=False))
    assert pd.read_csv(path).equals(df)
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640])
def test_mode_is_applied_exactly_whatever_the_umask(tmp_path, mode):
    path = tmp_path / "secret.key"
    old = os.umask(0o077)
    try:
        write_atomic(path, "k", mode=mode)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    write_atomic(path, "k2", mode=0o600)  # replacing sets the new file's mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "k2"


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_without_mode_the_umask_decides(tmp_path):
    old = os.umask(0o027)
    try:
        path = write_atomic(tmp_path / "plain.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_temp_names_are_unique_and_hidden_beside_the_target(tmp_path):
    names = []

    def writer(tmp):
        names.append(tmp)
        tmp.write_text("x")

    for _ in range(3):
        write_with(tmp_path / "port", writer)
    assert len({n.name for n in names}) == 3
    assert all(n.parent == tmp_path and n.name.startswith(".port.") for n in names)
    assert [p.name for p in tmp_path.iterdir()] == ["port"]


def test_a_killed_writers_old_temp_is_removed_by_the_next_write(tmp_path):
    import os
    import time

    target = tmp_path / "export.csv"
    old = tmp_path / ".export.csv.0123456789ab.tmp"  # what a SIGKILLed writer leaves
    young = tmp_path / ".export.csv.ba9876543210.tmp"  # a concurrent writer's, still busy
    other = tmp_path / ".other.csv.0123456789ab.tmp"
    for p in (old, young, other):
        p.write_text("seq,ts\n1,...")
    past = time.time() - 3600
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    write_atomic(target, "done")
    assert target.read_text() == "done"
    assert not old.exists() and young.exists() and other.exists()

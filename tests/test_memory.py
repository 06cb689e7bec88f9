"""release_freed_memory: freed heap pages really go back to the operating system."""
from __future__ import annotations

import sys

import pytest

from fedcredit.memory import _libc, release_freed_memory


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux") or _libc() is None,
                    reason="malloc_trim is glibc's")
def test_a_fragmented_burst_is_returned_after_release():
    blocks = [bytes(2000) for _ in range(50_000)]  # ~100 MiB of malloc'd (not pymalloc) blocks
    keep = blocks[::50]  # pins pages across the heap: glibc cannot trim the top alone
    during = _rss_mib()
    del blocks
    release_freed_memory()
    after = _rss_mib()
    assert len(keep) == 1000
    assert during - after > 60, (during, after)


def test_release_is_safe_to_call_repeatedly():
    for _ in range(3):
        release_freed_memory()


def test_freed_arrow_buffers_are_returned_after_release():
    """pandas keeps text columns in Arrow's own pool, out of malloc_trim's reach."""
    pa = pytest.importorskip("pyarrow")
    pool = pa.default_memory_pool()
    if pool.backend_name == "system":
        pytest.skip("Arrow allocates from malloc here: the test above covers it")
    before = _rss_mib()
    texts = pa.array([f"91350100M{i:09d}" for i in range(2_000_000)])  # ~44 MiB in the pool
    during = _rss_mib()
    del texts
    release_freed_memory()
    after = _rss_mib()
    assert during - before > 40, (before, during)
    assert during - after > 40, (before, during, after)

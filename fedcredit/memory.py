"""Handing freed memory back to the operating system.

CPython and glibc keep freed heap pages mapped for reuse, so after a transient burst (parsing a
CSV of a million rows, a PSI session's strings, a tree's ciphertexts) a process keeps the
burst's size as resident memory, and the next burst stacks on top of it. ``malloc_trim``
returns those pages. Elsewhere (macOS, musl) this is a no-op.

pandas keeps text in Arrow arrays, and Arrow allocates from its own pool (mimalloc or
jemalloc), which keeps freed pages too and which ``malloc_trim`` does not reach: after a
million-row CSV, ~100 MB. That pool is asked to hand them back as well.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_freed_memory() -> None:
    """Return free heap pages to the OS (glibc's ``malloc_trim`` and Arrow's pool; a few
    milliseconds)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
    arrow = sys.modules.get("pyarrow")  # imported by pandas' text columns; never imported here
    if arrow is not None:
        arrow.default_memory_pool().release_unused()

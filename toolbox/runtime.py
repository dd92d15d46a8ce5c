"""Process-wide runtime settings that the command line applies once at start.

Large tensors and page faults: glibc serves every allocation over its mmap threshold (at most
32 MiB) with a fresh ``mmap`` and returns it to the kernel on free. Torch's CPU allocator is plain
malloc, so every large activation of a full-frame forward+backward (a dream octave, a batch of
unit images) is page-faulted in again on every step: about 110,000 faults (430 MiB) per 832x624
lite0 dream gradient here, 10-20 % of its time. Telling glibc to serve large blocks from the
heap and keep freed memory (``mallopt``) makes the second step reuse the first step's pages: zero
faults per gradient. The cost is that the process keeps its peak heap until it exits.

Set DEEPVIS_MALLOC=system to leave glibc's defaults alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc <malloc.h> parameter numbers
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_KEEP_UP_TO = 2**31 - 1  # mallopt takes an int: free heap top above this is still returned

_state = {"memory": "system"}


def keep_freed_memory() -> str:
    """Serve large tensors from a heap that keeps freed pages (glibc only); -> what is in effect.

    Idempotent. ``"kept"`` when applied, ``"system"`` when not (not Linux glibc, or DEEPVIS_MALLOC=system).
    """
    if _state["memory"] == "kept" or os.environ.get("DEEPVIS_MALLOC", "").lower() == "system":
        return _state["memory"]
    if not sys.platform.startswith("linux"):
        return _state["memory"]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return _state["memory"]
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # One arena: a thread's own arena is an mmap'd heap of at most 64 MiB, and a larger block
    # there is mmap'd whatever M_MMAP_MAX says; the main arena grows with brk instead.
    ok = mallopt(_M_ARENA_MAX, 1) and mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, _KEEP_UP_TO)
    if ok:
        _state["memory"] = "kept"
    return _state["memory"]


def memory_mode() -> str:
    """"kept" after keep_freed_memory() took effect, else "system"."""
    return _state["memory"]

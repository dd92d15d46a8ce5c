"""Process-wide runtime settings: glibc keeps freed tensor memory, so large tensors stop page-faulting."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Allocate, fill and free a 256 MiB tensor ten times, like the steps of a dream; count the page
# faults of the last three. (The first few are new heap: each freed block is a little too small for
# the next aligned request until neighbouring free blocks have coalesced.)
PROBE = """
import json, resource, sys
from toolbox.runtime import keep_freed_memory
mode = keep_freed_memory() if sys.argv[1] == "kept" else "system"
import torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
for _ in range(10):
    before = faults()
    torch.ones(64 * 2**20).sum()
    counts.append(faults() - before)
print(json.dumps({"mode": mode, "faults": sum(counts[-3:])}))
"""


def _probe(mode: str, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_kept_memory_removes_the_page_faults_of_a_reused_large_tensor():
    system, kept = _probe("system"), _probe("kept")
    assert kept["mode"] == "kept"
    pages = 3 * 256 * 2**20 // 4096
    assert system["faults"] > pages // 2  # glibc maps each one fresh: a fault per page
    assert kept["faults"] < pages // 20


def test_deepvis_malloc_system_leaves_glibc_alone():
    assert _probe("kept", DEEPVIS_MALLOC="system")["mode"] == "system"

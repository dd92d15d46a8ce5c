"""Where deepvis keeps what it computes once and reuses: ONNX exports, unit images, backend choices."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$DEEPVIS_CACHE, else ~/.cache/deepvis. Each kind of result has a subfolder (onnx/, units/)."""
    env = os.environ.get("DEEPVIS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "deepvis"

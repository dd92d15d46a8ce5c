"""ImageNet class names, taken from torchvision's weight metadata (no download).

torchvision keeps them as a literal list in ``torchvision/models/_meta.py``. Importing torchvision
costs over a second of start-up (it pulls in torch._dynamo), and lite0 needs nothing else from
it, so the list is read from that file's source; the import is the fallback.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

_META = ("models", "_meta.py")
_NAME = "_IMAGENET_CATEGORIES"


def _categories_from_source() -> tuple[str, ...] | None:
    spec = importlib.util.find_spec("torchvision")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *_META)
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == _NAME for t in node.targets):
            names = ast.literal_eval(node.value)
            return tuple(names) if len(names) == 1000 else None
    return None


@functools.lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    names = _categories_from_source()
    if names is None:
        from torchvision.models import ResNet50_Weights

        names = tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    return names


def read_labels(path) -> tuple[str, ...]:
    """One class name per line (blank lines ignored)."""
    with open(path) as f:
        return tuple(line.strip() for line in f if line.strip())

"""The models deepvis knows by name, and how to build each with its weights offline."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from toolbox.errors import DeepvisError
from toolbox.models import lite0
from toolbox.models.labels import imagenet_categories
from toolbox.models.layers import visualisable_layers
from toolbox.models.loaded import LoadedModel
from toolbox.models.onnx_user import load_onnx_model
from toolbox.models.preprocess import IMAGENET, LITE0, Preprocess

DEFAULT_MODEL = "lite0"
# torchvision classifiers we list and test; any other torchvision classifier name works too.
TORCHVISION_MODELS = ("googlenet", "inception_v3", "vgg16", "vgg11", "alexnet", "resnet18", "resnet50",
                      "mobilenet_v3_large", "efficientnet_b0")
INPUT_SIZES = {"inception_v3": 299}
# Auxiliary classifier heads: deepvis builds these models without them, so a state dict's keys
# for them (torchvision's files have them) are dropped by name; every other key must match.
AUX_HEADS = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}


def available_models() -> list[str]:
    return [DEFAULT_MODEL, *TORCHVISION_MODELS]


def _state_dict_hash(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DeepvisError(f"weights file not found: {path} (check the --weights path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same user problem
        raise DeepvisError(f"cannot read weights {path}: {type(exc).__name__} (expected a PyTorch state dict .pth)") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DeepvisError(f"weights {path} hold a {type(state).__name__}, not a state dict")
    return state


def _check_keys(module: nn.Module, state: dict, name: str, path: Path) -> None:
    """DeepvisError naming a few missing and unexpected keys when ``state`` is not ``module``'s state
    dict (auxiliary heads, AUX_HEADS, may be present or absent)."""
    aux = AUX_HEADS.get(name, ())
    expected = set(module.state_dict())
    missing = sorted(expected.difference(state))
    unexpected = sorted(k for k in set(state).difference(expected) if not k.startswith(aux))
    if not missing and not unexpected:
        return

    def few(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    parts = ([f"{len(missing)} missing keys ({few(missing)})"] if missing else []) + (
        [f"{len(unexpected)} unexpected keys ({few(unexpected)})"] if unexpected else [])
    raise DeepvisError(f"weights {path} do not fit model {name}: {'; '.join(parts)}; pass {name}'s state dict, "
                       "or --weights none for random weights")


def _torchvision_cached_weights(name: str) -> Path:
    import torchvision  # only for torchvision models: importing it costs over a second

    weights_enum = torchvision.models.get_model_weights(name)
    default = weights_enum.DEFAULT
    filename = os.path.basename(default.url)
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        raise DeepvisError(
            f"no weights for {name}: torchvision's {filename} is not in {path.parent}; copy it there from a "
            f"machine with internet (python -c \"import torchvision; torchvision.models.get_model('{name}', "
            f"weights='DEFAULT')\"), or pass --weights PATH, or --weights none for random weights"
        )
    return path


def _build_architecture(name: str) -> tuple[nn.Module, Preprocess]:
    if name == "lite0":
        return lite0.EfficientNetLite0(), LITE0
    import torchvision  # only for torchvision models: importing it costs over a second

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise DeepvisError(f"unknown model '{name}': choose one of {', '.join(available_models())} (deepvis models)")
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    module = torchvision.models.get_model(name, weights=None, **kwargs)
    size = INPUT_SIZES.get(name, 224)
    return module, Preprocess(size, IMAGENET.mean, IMAGENET.std)


def load_model(name: str = DEFAULT_MODEL, weights: str | None = None, device: str | torch.device = "cpu",
               channels_last: bool = False, labels: str | None = None, preprocess: str | None = None) -> LoadedModel:
    """Build a model by registry name with its weights.

    weights: None for the default (lite0: the bundled file; torchvision: its cached download),
    "none" for random initialisation, or a path to a state dict.
    A name ending in .onnx loads that file as a user graph (toolbox.models.onnx_user), with the
    optional labels file and preprocess YAML; weights, device and channels_last do not apply.
    """
    if name.lower().endswith(".onnx"):
        return load_onnx_model(name, labels=labels, preprocess=preprocess)
    random_init = weights is not None and weights.lower() == "none"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random weights are the same ones every run
        module, preprocess = _build_architecture(name)
    if random_init:
        source, state = "random", module.state_dict()
    else:
        if weights is not None:
            path = Path(weights)
        elif name == "lite0":
            path = lite0.bundled_weights_path()
        else:
            path = _torchvision_cached_weights(name)
        state = _load_state_dict(path)
        _check_keys(module, state, name, path)
        try:
            module.load_state_dict({k: v for k, v in state.items() if not k.startswith(AUX_HEADS.get(name, ()))})
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise DeepvisError(f"weights {path} do not fit model {name}: {first}") from None
        source = str(path)
    module.eval().requires_grad_(False)
    device = torch.device(device)
    module.to(device)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    return LoadedModel(
        name=name,
        module=module,
        preprocess=preprocess,
        categories=imagenet_categories(),
        layers=visualisable_layers(name, module),
        weights=source,
        weights_id=_state_dict_hash(state),
        device=device,
        channels_last=channels_last,
    )


def resolve_device(choice: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; otherwise the named device."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise DeepvisError(f"unknown device '{choice}': use auto, cpu, cuda or cuda:N")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise DeepvisError("--device cuda asked for, but no CUDA GPU is visible: use --device cpu")
    return torch.device(choice)

"""Models: registry, bundled weights, preprocessing, layers, activation capture."""
from toolbox.models.capture import ActivationCapture, forward_with_activations
from toolbox.models.registry import DEFAULT_MODEL, LoadedModel, available_models, load_model, resolve_device

__all__ = ["ActivationCapture", "forward_with_activations", "DEFAULT_MODEL", "LoadedModel",
           "available_models", "load_model", "resolve_device"]

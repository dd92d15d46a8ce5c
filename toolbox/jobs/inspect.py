"""deepvis inspect: everything about one still image, written as PNG and JSON files."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from torch import nn

from toolbox.analysis.activations import most_active_channels, top_predictions
from toolbox.analysis.frame_analysis import FrameAnalyser
from toolbox.analysis.saliency import METHODS, method_info
from toolbox.analysis.saliency.metrics import METRICS
from toolbox.atomic import user_write_errors
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.jobs.common import (check_folder_name, chosen_layer, describe_layer, layers_to_capture, model_from_config,
                                 require_4d)
from toolbox.jobs.saliency_maps import write_saliency_maps
from toolbox.output_set import OutputSet, check_output_folder
from toolbox.render.filters import filter_grid
from toolbox.render.mosaic import channel_mosaic, mosaic_geometry
from toolbox.render.text import titled_image
from toolbox.render.window import WindowContent, render_window
from toolbox.sources import Frame, read_image

SHEET_PANE = 1024  # pixels per side of each feature-map sheet


def first_conv(module: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first convolution that reads the image (3 input channels)."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3:
            return name, m
    raise ValueError("model has no convolution on the RGB input")


def inspect(image_path: str | Path, out_dir: str | Path, config: Config, methods: Sequence[str] | None = None,
            metrics: Sequence[str] = ()) -> dict[str, Path]:
    """Writes predictions.json, window.png, filters.png, features/NN_<layer>.png and saliency/ (each
    saliency method's map for the top-1 class, the CAMs at the configured layer or else the deepest
    visualisable one, and all of them in saliency/sheet.png; with ``metrics``,
    saliency/metrics.md and metrics.json: see toolbox.jobs.saliency_maps) as one output set
    (toolbox.output_set); -> {what: final path}. methods: saliency methods (default: all)."""
    methods = tuple(METHODS) if methods is None else tuple(methods)
    for method in methods:
        method_info(method)
    for metric in metrics:
        if metric not in METRICS:
            raise DeepvisError(f"unknown metric '{metric}': choose from {', '.join(METRICS)}")
    out_dir = check_output_folder(check_folder_name(out_dir, "inspect", "predictions.json, window.png, ..."), "inspect")
    image = read_image(image_path)
    model = model_from_config(config)
    if model.module is None:
        raise DeepvisError(f"deepvis inspect needs a PyTorch model: it draws the first convolution's filters and "
                           f"gradient saliency maps, which the ONNX graph {model.name} does not give; use deepvis "
                           "analyze for ONNX models")
    layer = chosen_layer(model, config.model.layer)
    with user_write_errors(out_dir), OutputSet(out_dir, "inspect") as files:
        return _inspect_into(files, image, image_path, model, layer, config, methods, metrics)


def _inspect_into(files: OutputSet, image, image_path, model, layer: str, config: Config, methods: Sequence[str],
                  metrics: Sequence[str]) -> dict[str, Path]:
    with FrameAnalyser(model, layers_to_capture(model, layer)) as analyser:
        result = analyser(Frame(image, 0, 0.0))
    predictions = top_predictions(result.logits, model.categories, config.display.top_k)
    written: dict[str, Path] = {}
    written["predictions"] = files.write_json("predictions.json", {
        "image": str(image_path), "model": model.name, "weights": model.weights,
        "random_weights": model.weights == "random",
        "predictions": [{"index": p.index, "label": p.label, "probability": p.probability} for p in predictions],
    })
    act = result.activations[layer]
    require_4d(layer, act, model.layers[-1])
    channel = most_active_channels(act, 1)[0][0]
    status = f"{Path(image_path).name} | {model.name} | {describe_layer(model, layer, act)} | channel {channel}"
    window = render_window(WindowContent(result.view, act, channel, predictions, status), config.layout, config.display)
    written["window"] = files.write_image("window.png", window)
    conv_name, conv = first_conv(model.module)
    filters = titled_image(filter_grid(conv.weight, 512, 512),
                           f"{conv_name}: {conv.out_channels} RGB filters, channel 0 top left, row by row")
    written["filters"] = files.write_image("filters.png", filters)
    for i, name in enumerate(model.layers):
        a = result.activations[name]
        if a.dim() != 3:
            continue
        geometry = mosaic_geometry(a.shape[0], a.shape[1], a.shape[2], SHEET_PANE, SHEET_PANE)
        sheet = channel_mosaic(a, geometry, config.display.normalisation, config.display.colormap)
        sheet = titled_image(sheet, f"{name} {tuple(a.shape)}: {a.shape[0]} channels, 0 top left, "
                             f"{geometry.cols} per row", scale=0.6)
        written[f"features/{name}"] = files.write_image(f"features/{i:02d}_{name}.png", sheet)
    cam_layer = layer if config.model.layer is not None else None  # a chosen layer is the CAMs' layer too
    staged = write_saliency_maps(model, result.view, files.path("saliency"), layer=cam_layer, methods=methods,
                                 metrics=metrics)
    written.update({key: files.final_path(path.relative_to(files.staging).as_posix()) for key, path in staged.items()})
    return written

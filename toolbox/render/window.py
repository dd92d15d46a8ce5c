"""The whole window for one frame: input, mosaic, zoom, predictions, status, side pane."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from toolbox.analysis.activations import Prediction
from toolbox.config import DisplayConfig, LayoutConfig
from toolbox.render.layout import compose
from toolbox.render.mosaic import MosaicGeometry, channel_mosaic, mosaic_geometry, normalised_channel
from toolbox.render.panes import channel_zoom, fit_image, predictions_pane
from toolbox.render.text import text_strip


@functools.lru_cache(maxsize=256)
def pane_mosaic_geometry(channels: int, fmap_h: int, fmap_w: int, pane_h: int, pane_w: int) -> MosaicGeometry:
    return mosaic_geometry(channels, fmap_h, fmap_w, pane_h, pane_w)


def activation_geometry(act: torch.Tensor, layout: LayoutConfig) -> MosaicGeometry:
    """The mosaic grid for a (C, H, W) activation in the layout's mosaic pane."""
    c, h, w = act.shape
    rect = layout.panes["mosaic"]
    return pane_mosaic_geometry(c, h, w, rect.h, rect.w)


@dataclass(frozen=True)
class WindowContent:
    """Everything one window image shows. ``side`` and ``input_overlay`` are optional panes."""

    view: np.ndarray  # (S, S, 3) uint8 BGR model view
    activation: torch.Tensor  # (C, H, W) selected layer
    channel: int
    predictions: list[Prediction]
    status: str
    side: np.ndarray | None = None
    zoom: np.ndarray | None = None  # replaces the channel zoom when given (e.g. a saliency map)
    mosaic: np.ndarray | None = None  # replaces the activation mosaic when given (e.g. filters, a dream)


def render_window(content: WindowContent, layout: LayoutConfig, display: DisplayConfig) -> np.ndarray:
    """(layout.height, layout.width, 3) uint8 BGR."""
    panes = layout.panes
    images: dict[str, np.ndarray] = {}
    if "input" in panes:
        rect = panes["input"]
        images["input"] = fit_image(content.view, rect.h, rect.w, interpolation=cv2.INTER_LINEAR)
    act = content.activation
    if "mosaic" in panes and content.mosaic is not None:
        images["mosaic"] = content.mosaic
    elif "mosaic" in panes:
        geometry = activation_geometry(act, layout)
        images["mosaic"] = channel_mosaic(act, geometry, display.normalisation, display.colormap, content.channel)
    if "zoom" in panes:
        if content.zoom is not None:
            images["zoom"] = content.zoom
        else:
            unit = normalised_channel(act, content.channel, display.normalisation)
            images["zoom"] = channel_zoom(unit, panes["zoom"].h, panes["zoom"].w, display.colormap)
    if "predictions" in panes:
        rect = panes["predictions"]
        images["predictions"] = predictions_pane([(p.label, p.probability) for p in content.predictions],
                                                 rect.h, rect.w, layout.font_scale)
    if "status" in panes:
        rect = panes["status"]
        images["status"] = text_strip(content.status, rect.h, rect.w, scale=layout.font_scale)
    if content.side is not None:
        images["side"] = content.side
    return compose(layout.width, layout.height, panes, images)

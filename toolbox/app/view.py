"""From (state, newest frame, newest result) to the window image, using the pure render functions.

The expensive part (mosaic, zoom, predictions) is the *base*, rendered once per result and
state (in the compute thread when it can, see ``LiveCompute.render``); each displayed frame
then only pastes the newest input, the status line and the live marks onto a copy of it.

Extensions add panes with ``pane_providers``: {"side" | "zoom" | "mosaic" | "input" | "predictions": fn(result, state)
-> image or None} (e.g. unit pictures from a background task, a saliency map from ``result.extras``, the
filter view in place of the activation mosaic), and words to the status line with ``status_flags``.
The newest input is pasted over the input pane on every display unless an ``input_holders`` entry
says the pane shows the result's own frame (e.g. a heatmap over the frame it explains).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from toolbox.app.compute import LiveResult
from toolbox.app.overlays import channel_over_input
from toolbox.app.state import AppState, LayerShape
from toolbox.config import Config, DisplayConfig
from toolbox.render.layout import Rect, compose
from toolbox.render.mosaic import normalised_channel
from toolbox.render.panes import fit_image
from toolbox.render.text import text_strip
from toolbox.render.window import WindowContent, render_window

PaneProvider = Callable[[LiveResult, AppState], "np.ndarray | None"]


class LiveView:
    def __init__(self, config: Config, layers: tuple[LayerShape, ...]):
        self.layout = config.layout
        self.display = config.display
        self.layers = layers
        self.pane_providers: dict[str, PaneProvider] = {}
        self.status_flags: list[Callable[[AppState], "str | None"]] = []  # extension words after the mode
        self.input_holders: list[Callable[[AppState], bool]] = []  # True: keep the base's input pane
        # What the pane providers read besides the result and the state (the app: its tasks' version),
        # so that a base rendered in the compute thread is reused on the draw thread while it is current.
        self.version: Callable[[], int] = lambda: 0
        self._colormap = config.display.colormap if config.display.colormap != "none" else "viridis"

    @property
    def panes(self) -> dict[str, Rect]:
        return self.layout.panes

    def pane_size(self, name: str) -> tuple[int, int] | None:
        """(h, w) of the layout's pane ``name``, or None where the layout has no such pane."""
        rect = self.panes.get(name)
        return None if rect is None else (rect.h, rect.w)

    def add_pane_provider(self, name: str, provider: PaneProvider) -> None:
        """Let ``provider`` fill pane ``name``; where it returns None the pane's earlier provider
        (if any) draws it, so plugins stack (saliency over the unit column, a dream over the filters)."""
        previous = self.pane_providers.get(name)
        if previous is None:
            self.pane_providers[name] = provider
            return

        def stacked(result: LiveResult, state: AppState) -> np.ndarray | None:
            pane = provider(result, state)
            return previous(result, state) if pane is None else pane

        self.pane_providers[name] = stacked

    def display_config(self, state: AppState) -> DisplayConfig:
        return dataclasses.replace(self.display, normalisation=state.normalisation,
                                   colormap=self._colormap if state.colormap_on else "none")

    def render_key(self, state: AppState) -> tuple:
        """The state fields (and the providers' version) the base image depends on."""
        return (state.layer, state.channel, state.zoom, state.normalisation, state.colormap_on, state.overlay,
                state.mode, tuple(sorted(state.extras.items())), self.version())

    def base(self, result: LiveResult, state: AppState) -> tuple[np.ndarray, tuple]:
        """(window image without input/status, its render key). Pure: safe in the compute thread."""
        key = self.render_key(state)  # before the providers read: a change meanwhile makes it stale
        layer = self.layers[state.layer].name
        act = result.activations[layer]
        display = self.display_config(state)
        zoom = None
        rect = self.panes.get("zoom")
        if rect is not None and state.zoom == "overlay":
            unit = normalised_channel(act, state.channel, display.normalisation).numpy()
            zoom = fit_image(channel_over_input(result.view, unit), rect.h, rect.w)
        elif rect is not None and state.zoom == "input":
            zoom = fit_image(result.view, rect.h, rect.w)
        extra = {name: fn(result, state) for name, fn in self.pane_providers.items()}
        if extra.get("zoom") is not None:
            zoom = extra["zoom"]
        content = WindowContent(result.view, act, min(state.channel, act.shape[0] - 1), result.predictions, "",
                                side=extra.get("side"), zoom=zoom, mosaic=self.fitted(extra.get("mosaic"), "mosaic"))
        image = render_window(content, self.layout, display)
        for pane in ("input", "predictions"):
            if extra.get(pane) is not None:
                self.paste(image, pane, extra[pane])
        return image, key

    def input_held(self, state: AppState) -> bool:
        """The input pane shows the result's frame as the base drew it, not the newest input."""
        return any(fn(state) for fn in self.input_holders)

    def empty(self) -> np.ndarray:
        """The window before the first result."""
        return compose(self.layout.width, self.layout.height, self.panes, {})

    def fitted(self, content: np.ndarray | None, pane: str) -> np.ndarray | None:
        """``content`` scaled to fill its pane (keeping its aspect), or None."""
        rect = self.panes.get(pane)
        if content is None or rect is None or content.shape[:2] == (rect.h, rect.w):
            return content
        return fit_image(content, rect.h, rect.w)

    def paste(self, image: np.ndarray, pane: str, content: np.ndarray) -> None:
        rect = self.panes.get(pane)
        if rect is None:
            return
        content = self.fitted(content, pane)
        image[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w] = content

    def paste_status(self, image: np.ndarray, text: str) -> None:
        rect = self.panes.get("status")
        if rect is not None:
            self.paste(image, "status", text_strip(text, rect.h, rect.w, scale=self.layout.font_scale))

    def status_text(self, source: str, model: str, state: AppState, result: LiveResult | None,
                    rates: tuple[float, float, float], flags: list[str]) -> str:
        shape = self.layers[state.layer]
        act = "" if result is None else f" act {float(result.channel_means(shape.name)[state.channel]):.2f}"
        flags = [*(word for fn in self.status_flags if (word := fn(state))), *flags]
        mode = state.mode + "".join(f" {f}" for f in flags)
        cap, net, disp = rates
        return (f"{source} | {model} | layer {state.layer + 1}/{len(self.layers)} {shape.name} "
                f"{shape.channels}x{shape.height}x{shape.width} | ch {state.channel}{act} | norm {state.normalisation}"
                f" | fps cap {cap:.0f} net {net:.0f} disp {disp:.0f} | {mode}")

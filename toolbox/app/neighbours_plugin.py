"""The neighbours pane (key N): the indexed frames (``live --index DIR``) or, without an index, the
frames seen this session that lie nearest to the current frame in feature space, updated every frame.

The pane takes the side column while it is on; the side column's own content comes back when it is off.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from toolbox.app.latent_source import latent_source
from toolbox.app.state import AppState, LiveContext, register_action
from toolbox.render.montage import neighbours_pane

SHOWN = "latent_neighbours"  # extras: bool, the pane is on
NEIGHBOURS = 6


@register_action("latent_neighbours")
def toggle_neighbours(state: AppState, context: LiveContext) -> AppState:
    return dataclasses.replace(state, extras={**state.extras, SHOWN: not state.extras.get(SHOWN, False)})


def install_neighbours(app):
    """Plugin for ``LiveOptions.plugins``: stage "neighbours" (compute thread) and the side pane."""
    source = latent_source(app)
    rect = app.view.panes.get("side")
    previous = app.view.pane_providers.get("side")

    def stage(result, state):
        if not state.extras.get(SHOWN):
            return None
        return source.nearest(result.extras["latent"], NEIGHBOURS, result.frame_index)

    def side(result, state) -> np.ndarray | None:
        if not state.extras.get(SHOWN) or rect is None:
            return previous(result, state) if previous is not None else None
        matches = result.extras.get("neighbours") or []
        return neighbours_pane([m.thumbnail for m in matches],
                               [[f"d {m.distance:.1f} {m.cls}", m.label] for m in matches], rect.h, rect.w,
                               title=f"nearest at {source.layer} ({source.description})")

    app.compute.add_stage("neighbours", stage, depends_on=(SHOWN,))
    app.view.pane_providers["side"] = side
    app.view.status_flags.append(lambda state: "neighbours" if state.extras.get(SHOWN) else None)
    return source

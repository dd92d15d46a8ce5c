"""The concept meter (``live --cav DIR``, the folder ``deepvis tcav`` wrote): for each concept and the
current frame, the cosine between the frame's activation and the concept's CAV, and the sign of the
directional derivative of the top-1 class's logit along the CAV (does more of the concept raise the
class the model sees?). It shares the predictions pane with the top classes.

The cosine is computed every frame in the compute thread (a dot product). The derivative needs a
backward pass, so it runs as a background task at most every ``REFRESH_S`` seconds, on the newest frame.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from toolbox.analysis.latent.concepts import layer_gradient
from toolbox.errors import DeepvisError
from toolbox.jobs.tcav import CAV_FILE, CAV_META
from toolbox.render.concept_meter import concept_meter
from toolbox.render.panes import predictions_pane

REFRESH_S = 0.5


def load_cavs(folder: str | Path, model, live_layers: list[str]) -> tuple[dict, list[tuple[str, str, np.ndarray]]]:
    """(meta, [(concept, layer, unit CAV (F,))]) from a tcav output folder, checked against the model."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / CAV_META).read_text())
        with np.load(folder / CAV_FILE) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise DeepvisError(f"--cav {folder}: no readable {CAV_META} and {CAV_FILE} ({type(exc).__name__}); give the "
                           "folder 'deepvis tcav --out' wrote") from None
    if (meta.get("model"), meta.get("weights_id")) != (model.name, model.weights_id):
        raise DeepvisError(f"--cav {folder} holds CAVs of model {meta.get('model')} (weights {meta.get('weights_id')}); "
                           f"the live window runs {model.name} (weights {model.weights_id}): use that model")
    cavs = []
    for key, vector in arrays.items():
        concept, _, layer = key.partition("|")
        if layer not in live_layers:
            raise DeepvisError(f"--cav {folder}: layer {layer} is not one the live window captures; make the CAVs "
                               "at one of the layers 'deepvis layers' lists")
        cavs.append((concept, layer, vector.astype(np.float32)))
    return meta, cavs


class ConceptMeter:
    def __init__(self, model, meta: dict, cavs, tasks):
        self.model, self.meta, self.cavs, self.tasks = model, meta, cavs, tasks
        self.signs: dict[tuple[str, str], float] = {}
        self.sign_class = ""
        self._last = 0.0

    def stage(self, result, state) -> list[tuple[str, str, float | None]]:
        """Compute thread: [(concept, layer, cosine or None if the CAV was made at another input size)]."""
        rows = []
        for concept, layer, cav in self.cavs:
            act = result.activations[layer].flatten().float().numpy()
            if act.size != cav.size:
                rows.append((concept, layer, None))
                continue
            rows.append((concept, layer, float(act @ cav / max(np.linalg.norm(act), 1e-12))))
        now = time.monotonic()
        handle = self.tasks.latest("concept_meter")
        if now - self._last >= REFRESH_S and (handle is None or not handle.running) and result.predictions:
            self._last = now
            view, top = result.view, result.predictions[0]
            self.tasks.start("concept_meter", lambda task: self._derivatives(view, top.index, top.label),
                             label="concept meter", cancellable=False)
        return rows

    def _derivatives(self, view: np.ndarray, target: int, label: str) -> None:
        """Background: the sign of d logit[target] / d activation · CAV for each concept."""
        x = self.model.input_tensor(view)
        by_layer: dict[str, list] = {}
        for concept, layer, cav in self.cavs:
            by_layer.setdefault(layer, []).append((concept, cav))
        signs = {}
        for layer, entries in by_layer.items():
            _, grad = layer_gradient(self.model.module, x, layer, target)
            for concept, cav in entries:
                if grad.shape[1] == cav.size:
                    signs[(concept, layer)] = float(np.sign(grad[0].numpy() @ cav))
        self.signs, self.sign_class = signs, label

    def pane(self, result, height: int, width: int, font_scale: float) -> np.ndarray:
        rows = result.extras.get("concepts") or []
        meter_h = min(height // 2, 22 * len(rows) + 24)
        top = predictions_pane([(p.label, p.probability) for p in result.predictions], height - meter_h, width,
                               font_scale)
        entries = [(c, layer, cos, self.signs.get((c, layer))) for c, layer, cos in rows]
        return np.vstack([top, concept_meter(entries, self.sign_class, meter_h, width)])


def install_concepts(app):
    """Plugin for ``LiveOptions.plugins``: with ``--cav DIR``, the concept meter under the predictions."""
    folder = getattr(app.options, "cav", None)
    rect = app.view.panes.get("predictions")
    if not folder or rect is None:
        return None
    if app.model.module is None:
        raise DeepvisError("--cav needs gradients, which an ONNX graph does not give: use a PyTorch model")
    meta, cavs = load_cavs(folder, app.model, [s.name for s in app.layers])
    meter = ConceptMeter(app.model, meta, cavs, app.tasks)
    app.compute.add_stage("concepts", meter.stage)
    app.view.pane_providers["predictions"] = lambda result, state: meter.pane(
        result, rect.h, rect.w, app.config.layout.font_scale)
    app.concept_meter = meter
    return meter

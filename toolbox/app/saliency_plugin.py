"""Saliency in the live window: which pixels make the selected unit, or the top-1
class, fire; and the gradient reaching each channel of the selected layer ("back diffs").

Keys (configs/keys.yaml):

    saliency_method      cycle ``AppState.overlay``: none -> every method of the METHODS registry in its
                         order -> RISE -> none; expensive ones are announced "[slow: background]"
    saliency_target      backprop origin: the unit under the cursor -> that unit, frozen (it stays while
                         the cursor moves) -> the top-1 class -> the cursor again
    saliency_placement   the heatmap over the input pane / alone in the side pane
    saliency_back_diffs  the mosaic shows d target / d activation per channel instead of activations

Threads: single-pass methods take over the frame's forward (``LiveCompute.forward_for``): one forward
and one backward (``saliency_pass``) give the activations of every layer, the logits, the map and the
layer gradient, so a gradient view costs no second forward. Their hooks act only on the compute
thread's forwards, so dreams, unit pictures and inversions run meanwhile on the same model untouched;
LRP, which also folds BatchNorms into the weights and puts zennit's rule hooks on every layer while it
runs, takes its pass on the compute thread's own copy of the model (``lrp_model``). Expensive methods
(``EXPENSIVE``) run in a
background task on a hook-free copy of the model (onnxruntime's batch forward for an ONNX graph), one
map after another with ``saliency.refresh_s`` between; the window shows the newest map and its age.
Reducers stay pure; the pane providers and the status flag only read.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from toolbox.analysis.frame_analysis import FrameResult
from toolbox.analysis.rise import rise_saliency
from toolbox.analysis.saliency import LIVE_CYCLE, METHODS, saliency_map, saliency_pass
from toolbox.analysis.saliency.lrp import LRP_COMPOSITES
from toolbox.analysis.saliency.perturbation import occlusion
from toolbox.analysis.saliency.targets import ClassTarget, Target, UnitTarget
from toolbox.app.compute import LiveCompute, LiveResult
from toolbox.app.state import AppState, Effect, LayerShape, LiveContext, Transition, register_action, with_extras
from toolbox.app.tasks import TaskContext, TaskRunner, lower_priority
from toolbox.config import SaliencyConfig
from toolbox.models.module_copy import copy_without_hooks
from toolbox.models.registry import LoadedModel
from toolbox.render.heatmap import HeatmapStyle, gradient_picture, method_style, render_heatmap
from toolbox.render.mosaic import back_diffs_mosaic, mosaic_geometry
from toolbox.render.panes import fit_image, labelled_pane
from toolbox.sources.frame import Frame

OFF = "none"  # AppState.overlay without a saliency map
LIVE_METHODS = (*(m for m in LIVE_CYCLE if m is not None), "rise")  # the method key's order after "off"
TITLES = {**{name: m.title for name, m in METHODS.items()}, "rise": "RISE"}
EXPENSIVE = frozenset({*(name for name, m in METHODS.items() if m.expensive), "rise"})
GRADIENT_FREE = frozenset({"occlusion", "rise"})  # a batch forward is all they need (onnxruntime too)
SINGLE_PASS = frozenset(m for m in LIVE_METHODS if m not in EXPENSIVE)
EXPENSIVE_MARK = "[slow: background]"
BACK_DIFFS_RULE = "gradient"  # the pass that feeds the back-diffs mosaic when no single-pass method is on

TARGET = "saliency_target"  # extras: None (the cursor's unit) | ("unit", layer, channel) frozen | ("class",) top-1
PLACEMENT = "saliency_placement"  # extras: "overlay" | "side"
BACK_DIFFS = "saliency_back_diffs"  # extras: bool
TASK = "saliency"  # background task name


# --- key actions (pure) ---------------------------------------------------------------------------

@register_action("saliency_method")
def cycle_method(state: AppState, context: LiveContext) -> Transition:
    """The next method of every registered one (``LIVE_METHODS``), announced with its cost."""
    order = (OFF, *LIVE_METHODS)
    following = order[(order.index(state.overlay) + 1) % len(order)] if state.overlay in order else OFF
    return Transition(dataclasses.replace(state, overlay=following),
                      (Effect("message", text=f"saliency: {method_label(following)}"),))


def method_label(method: str) -> str:
    """The method's title, marked when it is expensive (computed in the background, updated less often)."""
    if method == OFF:
        return "off"
    return TITLES[method] + (f" {EXPENSIVE_MARK}" if method in EXPENSIVE else "")


@register_action("saliency_target")
def cycle_target(state: AppState, context: LiveContext) -> Transition:
    current = state.extras.get(TARGET)
    if current is None:
        layer = context.layers[state.layer].name
        new, text = ("unit", layer, state.channel), f"saliency target frozen: {layer} ch {state.channel}"
    elif current[0] == "unit":
        new, text = ("class",), "saliency target: the top-1 class"
    else:
        new, text = None, "saliency target follows the cursor"
    return Transition(with_extras(state, **{TARGET: new}), (Effect("message", text=text),))


@register_action("saliency_placement")
def toggle_placement(state: AppState, context: LiveContext) -> AppState:
    return with_extras(state, **{PLACEMENT: "overlay" if placement(state) == "side" else "side"})


@register_action("saliency_back_diffs")
def toggle_back_diffs(state: AppState, context: LiveContext) -> AppState:
    return with_extras(state, **{BACK_DIFFS: not state.extras.get(BACK_DIFFS, False)})


def placement(state: AppState) -> str:
    return str(state.extras.get(PLACEMENT) or "overlay")


def target_of(state: AppState, layers: tuple[LayerShape, ...]) -> Target:
    """The backprop origin the state asks for."""
    spec = state.extras.get(TARGET)
    if spec is None:
        return UnitTarget(layers[state.layer].name, state.channel)
    if spec[0] == "unit":
        return UnitTarget(spec[1], int(spec[2]))
    return ClassTarget()


# --- the plugin ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LiveMap:
    """One saliency map and what it explains. map: raw signed, as ``saliency_map`` returns it (CPU).
    view: (S, S, 3) uint8 BGR model view it was computed on. layer_gradient: (C, h, w) at
    ``gradient_layer`` (single-pass methods), else None. made_at: time.monotonic() when finished."""

    method: str
    map: torch.Tensor
    view: np.ndarray
    target: str
    frame_index: int
    made_at: float
    layer_gradient: torch.Tensor | None = None
    gradient_layer: str | None = None
    key: tuple = ()  # (method, target, layer) it answers


@dataclass
class SaliencyFrame(FrameResult):
    """A FrameResult from the saliency forward, with the map of the same pass."""

    saliency: LiveMap | None = None


class LiveSaliency:
    """The saliency forward, the background maps, and the panes that draw them.

    compute: the app's LiveCompute (its analyser says whether gradients are possible and runs the
    batch forward of an ONNX graph). side_size / mosaic_size / input_size: (h, w) of the panes.
    """

    def __init__(self, model: LoadedModel, layers: tuple[LayerShape, ...], compute: LiveCompute, tasks: TaskRunner,
                 config: SaliencyConfig, side_size=None, mosaic_size=None, input_size=None, display=None):
        self.model, self.layers, self.compute, self.tasks, self.config = model, layers, compute, tasks, config
        self.side_size, self.mosaic_size, self.input_size = side_size, mosaic_size, input_size
        self.display = display  # LiveView.display_config, for the mosaic's normalisation and colours
        self.index = {s.name: i for i, s in enumerate(layers)}
        # The saliency pass runs the torch module itself, whatever backend runs the plain frames.
        self.supports_gradients = model.module is not None
        self.unavailable = getattr(compute.analyser, "gradients_unavailable", "gradients need a torch model")
        self.error = ""
        self.class_label = ""  # the class the newest class-target map explains
        self._lock = threading.Lock()
        self.task_lock = threading.Lock()  # one background computation at a time on the task model
        self._local = threading.local()  # the task this thread computes a map for
        self._task_model: LoadedModel | None = None
        self._lrp_model: tuple[object, LoadedModel] | None = None  # (the module it copies, the copy)
        self._task_key: tuple | None = None  # (method, target, layer) of the newest background task
        self._task_frame = None  # the Captured it started from
        self.background: LiveMap | None = None  # the newest finished background map (kept while the next runs)

    # what the state asks for ------------------------------------------------------------------------
    def available(self, method: str) -> bool:
        return method in GRADIENT_FREE or self.supports_gradients

    def pass_method(self, state: AppState) -> str | None:
        """The single-pass method the frame's forward runs, or None (plain forward)."""
        if not self.supports_gradients:
            return None
        if state.overlay in SINGLE_PASS:
            return state.overlay
        return BACK_DIFFS_RULE if state.extras.get(BACK_DIFFS) else None

    def target(self, state: AppState, method: str) -> Target:
        """Unit targets need the torch graph (RISE explains classes only)."""
        target = target_of(state, self.layers)
        if isinstance(target, UnitTarget) and (self.model.module is None or method == "rise"):
            return ClassTarget()
        return target

    def gradient_layer(self, state: AppState, target: Target, method: str) -> str | None:
        """The selected layer, unless a frozen unit lies before it (nothing flows back there from
        the unit): then none, or the unit's own layer for the Grad-CAM family."""
        layer = self.layers[state.layer].name
        if isinstance(target, UnitTarget) and self.index.get(target.layer, len(self.layers)) < state.layer:
            return target.layer if METHODS[method].needs_layer else None
        return layer

    # compute thread -----------------------------------------------------------------------------------
    def forward(self, frame: Frame, state: AppState) -> SaliencyFrame | None:
        """One forward + one backward for the frame when a single-pass view is on, else None."""
        method = self.pass_method(state)
        if method is None:
            return None
        start = time.perf_counter()
        view = self.model.preprocess.model_view(frame.image)
        target = self.target(state, method)
        layer = self.gradient_layer(state, target, method)
        model = self.lrp_model() if method in LRP_COMPOSITES else self.model
        try:
            out = saliency_pass(model, model.input_tensor(view), method, target, layer=layer,
                                capture=self.compute.layers)
            self.error = ""
        except Exception as exc:  # noqa: BLE001 - a plain forward still shows the frame
            self.error = f"{type(exc).__name__}: {exc}"
            return None
        self._note_class(target, out.class_index)
        done = time.perf_counter()
        saliency = LiveMap(method, out.map.detach().float().cpu(), view, self._describe(state, target), frame.index,
                           time.monotonic(), None if out.layer_gradient is None else out.layer_gradient.float().cpu(),
                           layer, (method, target, layer))
        return SaliencyFrame(frame, view, out.logits, out.activations, (done - start) * 1000, saliency)

    def stage(self, result: LiveResult, state: AppState) -> LiveMap | None:
        """After each forward: the pass's map (result.extras["saliency"]); keeps the background map going."""
        if state.overlay in EXPENSIVE and self.available(state.overlay):
            try:
                self._keep_background(result, state)
                if self.pass_method(state) is None:  # else the frame's pass owns the error line
                    self.error = ""
            except Exception as exc:  # noqa: BLE001 - the frame's result must still be shown
                self.error = f"{type(exc).__name__}: {exc}"
        elif self._task_key is not None:  # nobody shows a background map any more: stop it (its bar goes too)
            self.tasks.cancel(TASK)
            self._task_key = None  # choosing the method again starts a fresh map
        out = result.forward_output
        return out.saliency if isinstance(out, SaliencyFrame) else None

    def _keep_background(self, result: LiveResult, state: AppState) -> None:
        method = state.overlay
        target = self.target(state, method)
        layer = self.gradient_layer(state, target, method) if METHODS.get(method) else None
        key = (method, target, layer if isinstance(target, UnitTarget) else None)
        handle = self.tasks.latest(TASK)
        if handle is not None and self._task_key == key:
            if handle.status != "done":  # running; or Esc / a failure stops the refresh until the choice changes
                return
            if (self._task_frame is result.captured  # a frozen input: the map is current
                    or time.monotonic() - (handle.finished_at or 0) < self.config.refresh_s):
                return
        self._task_key, self._task_frame = key, result.captured
        description = self._describe(state, target)
        view, index = result.view, result.frame_index
        self.tasks.start(TASK, lambda task: self._background_map(task, method, target, layer, view, index,
                                                                 description, key),
                         label=TITLES[method])

    def _background_map(self, task: TaskContext, method: str, target: Target, layer: str | None,
                        view: np.ndarray, frame_index: int, description: str, key: tuple) -> LiveMap:
        lower_priority()  # background maps take only the CPU that capture, compute and display leave
        # One map at a time: a superseded task stops at its next forward (the cancel check below),
        # and the next one waits for it, so two never share the private model's hooks.
        with self.task_lock:
            self._local.task = task
            try:
                return self._make_map(task, method, target, layer, view, frame_index, description, key)
            finally:
                self._local.task = None

    def _make_map(self, task: TaskContext, method: str, target: Target, layer: str | None,
                  view: np.ndarray, frame_index: int, description: str, key: tuple) -> LiveMap:
        task.check()
        defaults = dict(METHODS[method].defaults) if method in METHODS else {}
        if self.model.module is None:  # an ONNX graph: the analyser's batch forward (onnxruntime)
            analyser = self.compute.analyser
            forward = lambda batch: (task.check(), analyser.forward_logits(batch))[1]  # noqa: E731
            x = self.model.preprocess.to_tensor(view, getattr(analyser, "device", "cpu"))
        else:
            model = self.task_model()
            forward, x = model.module, model.input_tensor(view)
        # Reported after every batch; the check also stops forwards that bypass the task model's
        # hook (Score-CAM's masked images go through an inference copy of it).
        progress = lambda done: (task.report(done), task.check())  # noqa: E731
        with torch.inference_mode(method in GRADIENT_FREE):
            if method == "rise":
                saliency = rise_saliency(forward, x, getattr(target, "index", None), count=self.config.rise_masks,
                                         batch_size=32, progress=task.report)
            elif method == "occlusion" and self.model.module is None:
                saliency = occlusion(forward, x, getattr(target, "index", None), progress=progress, **defaults)
            else:
                saliency = saliency_map(model, x, method, target, layer=layer, progress=progress)
        if isinstance(target, ClassTarget) and target.index is None:
            with torch.inference_mode():
                self._note_class(target, torch.as_tensor(forward(x)[0].argmax()))
        task.check()  # a superseded map is not shown
        self.background = LiveMap(method, saliency.detach().float().cpu(), view, description, frame_index,
                                  time.monotonic(), key=key)
        return self.background

    def task_model(self) -> LoadedModel:
        """A private copy without the live hooks: background forwards through the shared module would
        run the frame pass's hooks (its layer taps) from another thread."""
        with self._lock:
            if self._task_model is None:
                module = copy_without_hooks(self.model.module)
                # Every forward of a background map first checks its task: Esc, or a newer choice,
                # stops SmoothGrad / integrated gradients / occlusion between batches.
                module.register_forward_pre_hook(self._check_cancelled)
                self._task_model = dataclasses.replace(self.model, module=module)
            return self._task_model

    def lrp_model(self) -> LoadedModel:
        """The compute thread's own hook-free copy of the model for the LRP passes, made on first use
        and again when the model's module is replaced. LRP folds each BatchNorm into its convolution's
        weights and hooks zennit's rules onto every layer for the length of its pass: on the shared
        module a dream, a unit picture or an inversion running meanwhile in another thread would
        take those weights and rules (and LRP their stored tensors)."""
        module = self.model.module
        if self._lrp_model is None or self._lrp_model[0] is not module:
            self._lrp_model = (module, dataclasses.replace(self.model, module=copy_without_hooks(module)))
        return self._lrp_model[1]

    def _check_cancelled(self, module, inputs) -> None:
        task = getattr(self._local, "task", None)
        if task is not None:
            task.check()

    def _note_class(self, target: Target, class_index) -> None:
        if isinstance(target, ClassTarget) and class_index is not None:
            index = int(class_index)
            names = self.model.categories
            self.class_label = names[index] if index < len(names) else f"class {index}"

    def _describe(self, state: AppState, target: Target) -> str:
        if isinstance(target, ClassTarget):
            return "top-1 class"
        how = "frozen" if state.extras.get(TARGET) is not None else "cursor"
        return f"unit {target.layer}:{target.channel} ({how})"

    # reading (any thread) -----------------------------------------------------------------------------
    def current(self, result: LiveResult | None, state: AppState) -> LiveMap | None:
        """The newest map of the chosen method: the frame's own, or the newest background one."""
        method = state.overlay
        if method == OFF or not self.available(method):
            return None
        if method in EXPENSIVE:
            done = self.background  # the previous map stays up while the next one is computed
            return done if done is not None and done.key[:2] == (method, self.target(state, method)) else None
        live = None if result is None else result.extras.get("saliency")
        return live if live is not None and live.method == method else None

    def caption(self, saliency: LiveMap) -> str:
        text = f"{TITLES[saliency.method]} of {saliency.target}"
        if saliency.method in EXPENSIVE:
            text += f", {time.monotonic() - saliency.made_at:.1f} s old"
        return text

    def style(self, state: AppState, where: str) -> HeatmapStyle:
        return method_style(state.overlay, placement=where, alpha=self.config.alpha,
                            smooth_sigma=self.config.smooth_sigma)

    def holds_input(self, state: AppState) -> bool:
        return state.overlay != OFF and placement(state) == "overlay" and self.available(state.overlay)

    def input_pane(self, result: LiveResult, state: AppState) -> np.ndarray | None:
        """The heatmap over the frame it explains (placement "overlay"), else None."""
        saliency = self.current(result, state) if self.holds_input(state) else None
        if saliency is None or self.input_size is None:
            return None
        image = render_heatmap(saliency.map, saliency.view, self.style(state, "overlay"))
        if saliency.method in EXPENSIVE:  # an older frame than the rest of the window: say how old
            return labelled_pane(image, self.caption(saliency), *self.input_size)
        return fit_image(image, *self.input_size, interpolation=cv2.INTER_LINEAR)

    def side_pane(self, result: LiveResult, state: AppState) -> np.ndarray | None:
        """The map alone (placement "side"): signed colour picture for (3, H, W) maps, else a heatmap."""
        if state.overlay == OFF or placement(state) != "side" or self.side_size is None:
            return None
        saliency = self.current(result, state)
        if saliency is None:
            reason = self.unavailable if not self.available(state.overlay) else "computing..."
            return labelled_pane(None, f"{TITLES[state.overlay]}: {reason}", *self.side_size)
        if saliency.map.dim() == 3:
            image = gradient_picture(saliency.map, size=saliency.view.shape[0])
        else:
            image = render_heatmap(saliency.map, saliency.view, self.style(state, "side"))
        return labelled_pane(image, self.caption(saliency), *self.side_size)

    def mosaic_pane(self, result: LiveResult, state: AppState) -> np.ndarray | None:
        """Back diffs: the selected layer's per-channel gradient in the activation mosaic's grid."""
        if not state.extras.get(BACK_DIFFS) or self.mosaic_size is None:
            return None
        h, w = self.mosaic_size
        if not self.supports_gradients:
            return labelled_pane(None, f"back diffs: {self.unavailable}", h, w)
        saliency = None if result is None else result.extras.get("saliency")
        layer = self.layers[state.layer]
        if saliency is None or saliency.layer_gradient is None or saliency.gradient_layer != layer.name:
            why = self.error or "the target unit is in an earlier layer: select its layer or one before"
            return labelled_pane(None, f"back diffs: {why}", h, w)
        geometry = mosaic_geometry(layer.channels, layer.height, layer.width, h, w)
        display = self.display(state) if self.display is not None else None
        image = back_diffs_mosaic(saliency.layer_gradient, geometry,
                                  display.normalisation if display else "channel",
                                  display.colormap if display else "none", min(state.channel, layer.channels - 1))
        return fit_image(image, h, w, enlarge=False)  # centred, as the activation mosaic

    def status_flag(self, state: AppState) -> str | None:
        """Method, target and age, or why the method is unavailable; 'back diffs'; errors."""
        words = []
        method = state.overlay
        if method != OFF:
            title = method_label(method) if method in TITLES else method
            if not self.available(method):
                words.append(f"{title} unavailable: {self.unavailable}")
            else:
                target = self.target(state, method)
                text = f"{title} of {self._describe(state, target)}"
                if isinstance(target, ClassTarget) and self.class_label:
                    text += f" [{self.class_label}]"
                if method in EXPENSIVE:
                    saliency = self.current(None, state)
                    handle = self.tasks.latest(TASK)
                    if saliency is not None:
                        text += f", map {time.monotonic() - saliency.made_at:.1f} s old"
                    elif handle is not None and handle.status == "failed":
                        text += f", failed: {handle.error}"
                    else:
                        text += ", computing"
                words.append(text)
        if state.extras.get(BACK_DIFFS):
            words.append("back diffs")
        if self.pass_method(state) and "torch" not in self.compute.provider_label:
            words.append("(gradients via torch)")
        if self.error:
            words.append(f"saliency error: {self.error}")
        return " ".join(words) or None


def install_saliency(app) -> LiveSaliency:
    """Plugin for ``LiveOptions.plugins``: the saliency forward and stage, the heatmap in the input or
    side pane, the back-diffs mosaic, and the status words."""
    app.start_with_extras(**{PLACEMENT: app.config.saliency.placement})
    view = app.view
    saliency = LiveSaliency(app.model, app.layers, app.compute, app.tasks, app.config.saliency,
                            view.pane_size("side"), view.pane_size("mosaic"), view.pane_size("input"),
                            view.display_config)
    app.saliency = saliency
    app.compute.forward_for.append(saliency.forward)
    app.compute.add_stage("saliency", saliency.stage, depends_on=("overlay", "layer", "channel", TARGET, BACK_DIFFS))
    view.input_holders.append(saliency.holds_input)
    view.pane_providers["input"] = saliency.input_pane
    view.add_pane_provider("side", saliency.side_pane)  # over the unit column
    view.add_pane_provider("mosaic", saliency.mosaic_pane)  # over the filter or dream view
    view.status_flags.append(saliency.status_flag)
    return saliency

"""Faithfulness in the live window (key ``saliency_faithfulness``, K): the deletion AUC of the saliency
map on screen (toolbox.analysis.saliency.metrics), computed in a background task with progress.

The key only bumps a request counter (a pure reducer); the stage after the saliency stage sees the
new request, takes the map the window shows at that moment (its frame, method and target) and starts
the task on the saliency plugin's hook-free task model. The status line shows the newest value with
the method it scored and its age, or the progress while it runs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from toolbox.analysis.saliency.metrics import faithfulness
from toolbox.analysis.saliency.targets import ClassTarget, resolve_top1
from toolbox.app.saliency_plugin import OFF, TITLES, LiveMap, LiveSaliency
from toolbox.app.state import AppState, Effect, LiveContext, Transition, register_action, with_request
from toolbox.app.tasks import TaskContext, TaskRunner

REQUEST = "faithfulness_request"  # extras: how many times the key was pressed
TASK = "faithfulness"
STEPS = 50  # deletion steps (51 forward passes)
BATCH = 8  # masked images per forward: progress advances after each batch


@register_action("saliency_faithfulness")
def request_deletion_auc(state: AppState, context: LiveContext) -> Transition:
    if state.overlay == OFF:
        return Transition(state, (Effect("message", text="deletion AUC scores a saliency map: press g for one first"),))
    return Transition(with_request(state, REQUEST),
                      (Effect("message", text="deletion AUC of this map: computing in the background (Esc cancels)"),))


@dataclass(frozen=True)
class Score:
    """A finished deletion AUC: of ``method``'s map of frame ``frame_index``, made at ``made_at``."""

    method: str
    value: float
    frame_index: int
    made_at: float


class LiveFaithfulness:
    def __init__(self, saliency: LiveSaliency, tasks: TaskRunner):
        self.saliency, self.tasks = saliency, tasks
        self.seen = 0
        self.score: Score | None = None
        self.error = ""

    def stage(self, result, state: AppState) -> None:
        """After the saliency stage: start a task when the key asked for a new score."""
        request = int(state.extras.get(REQUEST, 0))
        if request == self.seen:
            return None
        self.seen = request
        live_map = self.saliency.current(result, state)
        if live_map is None or self.saliency.model.module is None:
            self.error = "no map on screen yet" if live_map is None else "needs a PyTorch model"
            return None
        self.error = ""
        self.tasks.start(TASK, lambda task: self._score(task, live_map), label=f"deletion AUC of {TITLES[live_map.method]}")
        return None

    def _score(self, task: TaskContext, live_map: LiveMap) -> Score:
        with self.saliency.task_lock:
            model = self.saliency.task_model()
            x = model.input_tensor(live_map.view)
            target = live_map.key[1] if len(live_map.key) > 1 else ClassTarget()
            if isinstance(target, ClassTarget) and target.index is None:
                with torch.inference_mode():
                    target = resolve_top1(target, model.module(x))
            batches = math.ceil((STEPS + 1) / BATCH)
            done = [0]

            def check():
                task.check()
                task.report(done[0] / batches)
                done[0] += 1

            result = faithfulness(model.module, x, live_map.map, target, ("deletion",), steps=STEPS,
                                  batch_size=BATCH, check=check)
        self.score = Score(live_map.method, result.values["deletion"], live_map.frame_index, time.monotonic())
        return self.score

    def status_flag(self, state: AppState) -> str | None:
        handle = self.tasks.latest(TASK)
        if handle is not None and handle.status == "running":
            return f"deletion AUC: {handle.progress:.0%}"
        if handle is not None and handle.status == "failed":
            return f"deletion AUC failed: {handle.error}"
        if self.error:
            return f"deletion AUC: {self.error}"
        if self.score is None:
            return None
        return (f"deletion AUC {self.score.value:.3f} of {TITLES[self.score.method]} (lower: more faithful), "
                f"{time.monotonic() - self.score.made_at:.0f} s old")


def install_faithfulness(app) -> LiveFaithfulness:
    """Plugin for ``LiveOptions.plugins`` (after install_saliency): the K key's background deletion AUC."""
    live = LiveFaithfulness(app.saliency, app.tasks)
    app.compute.add_stage("faithfulness", live.stage, depends_on=(REQUEST,))
    app.view.status_flags.append(live.status_flag)
    return live

"""The live window (deepvis live): state, key table, threads and the one OpenCV window.

Data flow: CaptureThread -> LatestSlot[Captured] -> ComputeThread (LiveCompute) -> LatestSlot[LiveResult]
-> main thread (LiveApp.draw: base image + newest input + status + marks -> Window.show). Nothing
waits on anything: each stage takes the newest value of the one before and skips the rest.

Extension points for features that plug in later (saliency, DeepDream, unit pictures):
- state.AppState: ``mode`` (what the compute thread produces: "live", "dream", ...), ``overlay``
  (saliency method name), ``extras`` (any other choice, a mapping treated as immutable).
- state.register_action(name, reducer): new key actions; bind them in configs/keys.yaml.
  A reducer is pure: (AppState, LiveContext) -> AppState | Transition(state, effects).
- compute.LiveCompute.add_stage(name, fn, depends_on=(state fields,)): fn(result, state) runs in the
  compute thread after the forward; its value lands in LiveResult.extras[name]. ``forward`` can be
  replaced by a callable(frame) -> FrameResult (e.g. one that keeps the graph for gradients).
- view.LiveView.pane_providers["zoom" | "side" | "mosaic"] = fn(result, state) -> BGR image or None
  (``add_pane_provider(name, fn)`` stacks fn over the pane's earlier provider, shown where fn gives None);
  view.LiveView.status_flags: fn(state) -> a word for the status line, or None.
- compute.LiveCompute.forward_for: fn(frame, state) -> FrameResult | None, a forward that takes over
  for some states (saliency: one forward + backward gives activations, map and layer gradient);
  view.LiveView.input_holders: fn(state) -> True keeps the result's frame (with a heatmap) in the input pane.
- live.LiveOptions.plugins: callables(app) run when the LiveApp is built, to install the above.
- tasks.TaskRunner (LiveApp.tasks): start(name, fn(task), label) -> TaskHandle with progress,
  label, status, result, age(); task.report(fraction, label), task.cancelled(), task.check();
  Esc cancels running tasks; the window draws their progress bars in the side pane.
"""

# Built-in extensions register their key actions on import, so that configs/keys.yaml may bind them
# whichever module loads the key table first.
from toolbox.app import units_plugin  # noqa: E402,F401
from toolbox.app import dream_plugin  # noqa: E402,F401
from toolbox.app import saliency_plugin  # noqa: E402,F401
from toolbox.app import faithfulness_plugin  # noqa: E402,F401
from toolbox.app import neighbours_plugin  # noqa: E402,F401
from toolbox.app import map_plugin  # noqa: E402,F401
from toolbox.app import style_plugin  # noqa: E402,F401

"""deepvis live: wires source, model, threads, state and window; the main thread's loop.

The main thread is the only one that touches OpenCV HighGUI. Each turn it reads a key
(``waitKeyEx``), applies the bound action to the state, forwards controls to the capture
thread and the state to the compute thread, and redraws only when something visible changed.
"""
from __future__ import annotations

import dataclasses
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from toolbox.analysis.backend_choice import provider_choice
from toolbox.app.compute import LiveCompute, LiveResult, mirrored
from toolbox.app.keys import KeyTable, load_key_table
from toolbox.app.overlays import help_overlay, hex_colour, mark_stale, no_signal, progress_bars
from toolbox.app.recorder import Recorder
from toolbox.app.snapshot import snapshot_paths, write_snapshot
from toolbox.app.state import AppState, Effect, LayerShape, LiveContext, reduce, with_extras
from toolbox.app.tasks import TaskRunner
from toolbox.app.threads import (Captured, CaptureThread, ComputeThread, LatestSlot, RateMeter, failure_text,
                                 set_cv_threads)
from toolbox.app.view import LiveView
from toolbox.app.window import Window, check_gui
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.jobs.common import chosen_layer, model_from_config
from toolbox.models.registry import LoadedModel
from toolbox.render.layout import Rect
from toolbox.sources import open_source
from toolbox.sources.base import FrameSource
from toolbox.sources.capture import CameraSource
from toolbox.sources.frame import Frame

MESSAGE_SECONDS = 4.0
STATUS_REFRESH_S = 0.5
FAILURE_SHOWN_S = 4.0  # a dead capture or compute thread: its error stays on screen this long, then the app exits
EXIT_THREAD_FAILED = 1
FIRST_FRAME_S = 3.0  # how long a camera or stream may take to deliver its first frame


@dataclass
class LiveOptions:
    paced: bool = True  # files at their own frame rate (False: as fast as compute allows)
    record: bool = False  # start recording at once
    snapshot_dir: str | None = None
    record_dir: str | None = None
    max_frames: int | None = None  # quit after this many displayed frames (benchmarks)
    index: str | None = None  # feature index the neighbours and map panes search (None: this session's frames)
    cav: str | None = None  # folder of CAVs (deepvis tcav --out) for the concept meter
    # Extensions: each is called with the LiveApp at the end of its construction, to add compute
    # stages (app.compute.add_stage), panes (app.view.pane_providers) or start tasks (app.tasks).
    plugins: list = field(default_factory=lambda: default_plugins())


def default_plugins() -> list:
    """The live features that ship with deepvis (their key actions are registered by toolbox.app)."""
    from toolbox.app.dream_plugin import install_dream
    from toolbox.app.saliency_plugin import install_saliency
    from toolbox.app.faithfulness_plugin import install_faithfulness
    from toolbox.app.concept_plugin import install_concepts
    from toolbox.app.map_plugin import install_map
    from toolbox.app.neighbours_plugin import install_neighbours
    from toolbox.app.style_plugin import install_style
    from toolbox.app.units_plugin import install_units

    return [install_units, install_dream, install_saliency, install_faithfulness, install_neighbours, install_map, install_concepts,
            install_style]


@dataclass
class LiveStats:
    """Measured by the main thread; the benchmark reads them."""

    displayed: int = 0
    input_latency_ms: list[float] = field(default_factory=list)  # capture -> first display of a frame
    result_latency_ms: list[float] = field(default_factory=list)  # capture -> first display of its activations

    def summary(self) -> dict:
        def stats(values):
            if not values:
                return None
            ordered = sorted(values)
            return {"median": round(statistics.median(ordered), 2),
                    "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2)}

        return {"displayed": self.displayed, "input_latency_ms": stats(self.input_latency_ms),
                "result_latency_ms": stats(self.result_latency_ms)}


RANDOM_MARK = "RANDOM WEIGHTS"  # shown wherever the model is named when it was never trained


def model_label(model: LoadedModel) -> str:
    """The model's name, marked when its weights are random (--weights none): its pictures mean nothing."""
    return f"{model.name} [{RANDOM_MARK}]" if model.weights == "random" else model.name


def window_title(base: str, model: LoadedModel) -> str:
    """The window's title: ``base``, plus the random-weights mark."""
    return f"{base} - {model.name} [{RANDOM_MARK}]" if model.weights == "random" else base


def frame_position(frame: Frame, count: int | None) -> str:
    """'frame 12/250, 0.48 s': the frame's index (1-based, of ``count`` when known) and media time."""
    of = f"/{count}" if count else ""
    return f"frame {frame.index + 1}{of}, {frame.timestamp:.2f} s"


def layer_shapes(model: LoadedModel, layers: list[str]) -> tuple[LayerShape, ...]:
    shapes = []
    for info in model.layer_infos(layers):
        if len(info.shape) != 3:
            continue  # not a (C, H, W) feature map: nothing to tile
        shapes.append(LayerShape(info.name, *info.shape))
    return tuple(shapes)


class LiveApp:
    def __init__(self, source: FrameSource, model: LoadedModel, config: Config, layer: str,
                 options: LiveOptions | None = None, first: Frame | None = None):
        self.source, self.model, self.config = source, model, config
        self.options = options or LiveOptions()
        live = config.live
        self.keys: KeyTable = load_key_table(live.keys)
        layers = list(model.layers) if layer in model.layers else [*model.layers, layer]
        self.layers = layer_shapes(model, layers)
        names = [s.name for s in self.layers]
        if layer not in names:
            raise DeepvisError(f"layer '{layer}' has no (C, H, W) output to show: pick a convolutional layer "
                               "(deepvis layers)")
        mosaic = config.layout.panes.get("mosaic", Rect(0, 0, 640, 640))
        self.initial = AppState(layer=names.index(layer), zoom=live.zoom,
                                normalisation=config.display.normalisation,
                                colormap_on=config.display.colormap != "none",
                                mirror=isinstance(source, CameraSource) and live.mirror_camera)
        self.context = LiveContext(self.layers, (mosaic.h, mosaic.w), seekable=source.seekable,
                                   fast_step=live.fast_move, seek_seconds=live.seek_seconds, initial=self.initial)
        self.state = self.initial
        self.view = LiveView(config, self.layers)
        self.tasks = TaskRunner()
        self.view.version = lambda: self.tasks.version
        self.stale_colour = hex_colour(live.stale_colour)
        self.accent_colour = hex_colour(live.accent_colour)
        # threads and their mailboxes
        self.frames: LatestSlot[Captured] = LatestSlot()
        self.states: LatestSlot[AppState] = LatestSlot()
        self.results: LatestSlot[LiveResult] = LatestSlot()
        self.wake = threading.Event()
        self.compute = LiveCompute(model, names, config.display.top_k, render=self.view.base,
                                   backend=config.model.backend, providers=provider_choice(config.model.device),
                                   threads=live.torch_threads)
        self.capture = CaptureThread(source, self.frames, self.wake, paced=self.options.paced,
                                     backoff=(live.reconnect_min_s, live.reconnect_max_s), first=first)
        self.compute_thread = ComputeThread(self.compute, self.frames, self.states, self.results, self.wake)
        self.capture.demand = lambda: self.compute_thread.taken_seq >= self.frames.get()[0]
        self.display_meter = RateMeter()
        self.stats = LiveStats()
        self.window: Window | None = None
        self.recorder: Recorder | None = None
        self.quit = False
        self.exit_code = 0
        self.failure = ""  # the error of a dead capture or compute thread ("" while both run)
        self._failed_at = 0.0
        self._moved_at = -MESSAGE_SECONDS  # the last seek, step or restart (time.monotonic())
        self._message = ("", 0.0)
        self._next_snapshot = 0
        self._drawn_key: tuple | None = None
        self._base_cache: tuple[tuple, np.ndarray] | None = None
        self._input_cache: tuple[tuple, np.ndarray] | None = None
        self._status = ("", 0.0)
        self._status_inputs: tuple = ()
        self._last_cap_seq = 0
        self._last_res_seq = 0
        if self.options.record:
            self.state = dataclasses.replace(self.state, recording=True)
        for plugin in self.options.plugins:
            plugin(self)

    def start_with_extras(self, **extras) -> None:
        """Put ``extras`` into the start state and into what reset returns to (a plugin's defaults)."""
        self.initial = with_extras(self.initial, **extras)
        self.state = with_extras(self.state, **extras)
        self.context = dataclasses.replace(self.context, initial=self.initial)

    # --- keys -------------------------------------------------------------------------------------
    def flash(self, text: str) -> None:
        self._message = (text, time.monotonic() + MESSAGE_SECONDS)

    def _live_context(self) -> LiveContext:
        _, result = self.results.get()
        means = None
        if result is not None:
            means = tuple(result.channel_means(self.layers[self.state.layer].name).tolist())
        return dataclasses.replace(self.context, channel_means=means, busy=self.tasks.busy)

    def on_key(self, code: int) -> None:
        action = self.keys.action_for(code)
        if action is None:
            return
        transition = reduce(self.state, action, self._live_context())
        self.state = transition.state
        for effect in transition.effects:
            self._apply(effect)

    def _apply(self, effect: Effect) -> None:
        kind = effect.kind
        if kind in ("seek_seconds", "step_frames", "restart"):
            self.capture.command(kind, effect.amount)
            self._moved_at = time.monotonic()
        elif kind == "snapshot":
            self.snapshot()
        elif kind == "quit":
            self.quit = True
        elif kind == "cancel_tasks":
            self.flash(f"cancelled {self.tasks.cancel()} task(s)")
        elif kind == "message":
            self.flash(effect.text)

    # --- side effects -------------------------------------------------------------------------------
    def snapshot(self) -> None:
        """Show the image with the 'snapshot' message, and write exactly that image (in the background)."""
        live = self.config.live
        directory = Path(self.options.snapshot_dir or live.snapshot_dir)
        panes = {name: rect for name, rect in self.view.panes.items()}
        files = snapshot_paths(directory, panes, start=self._next_snapshot)
        self._next_snapshot = files.number + 1
        self.flash(f"snapshot {files.window}")
        image = self.draw(force=True)
        info = self.snapshot_info()
        self.tasks.start("snapshot", lambda task: write_snapshot(files, image, panes, info),
                         label="snapshot", cancellable=False)

    def snapshot_info(self) -> dict:
        _, result = self.results.get()
        _, captured = self.frames.get()
        shape = self.layers[self.state.layer]
        info = {
            "source": self.source.name,
            "model": self.model.name,
            "weights": self.model.weights,
            "layer": {"index": self.state.layer, "name": shape.name,
                      "shape": [shape.channels, shape.height, shape.width]},
            "channel": self.state.channel,
            "state": {k: v for k, v in self.state.__dict__.items() if k != "extras"},
            "status": self._status[0],
            "input_frame_index": None if captured is None else captured.frame.index,
            "time": None if captured is None else round(captured.frame.timestamp, 4),
        }
        if result is not None:
            info["frame_index"] = result.frame_index
            info["channel_activation"] = round(float(result.channel_means(shape.name)[self.state.channel]), 6)
            info["predictions"] = [{"index": p.index, "label": p.label, "probability": round(p.probability, 6)}
                                   for p in result.predictions]
        return info

    def _sync_recording(self) -> None:
        if self.state.recording and self.recorder is None:
            live = self.config.live
            try:
                self.recorder = Recorder(self.options.record_dir or live.record_dir,
                                         (self.config.layout.width, self.config.layout.height), live.record_fps)
            except DeepvisError as error:
                self.state = dataclasses.replace(self.state, recording=False)
                self.flash(str(error))
                return
            self.recorder.start()
            self.flash(f"recording {self.recorder.path}")
        elif not self.state.recording and self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            try:
                path = recorder.finish()
            except DeepvisError as error:
                self.flash(str(error))
                return
            self.flash(f"saved {path}" if path else "nothing recorded")

    def sync(self) -> None:
        """Forward the state to the other threads (cheap when nothing changed)."""
        self.capture.set_controls(self.state.paused, self.state.frozen)
        _, published = self.states.get()
        if published != self.state:
            self.states.put(self.state)
            self.wake.set()
        self._sync_recording()

    # --- drawing ------------------------------------------------------------------------------------
    def _base(self, result: LiveResult | None, res_seq: int) -> np.ndarray:
        if result is None:
            return self.view.empty()
        key = self.view.render_key(self.state)  # holds the tasks' version: pane providers read task results
        if result.base is not None and result.render_key == key:
            return result.base
        cache_key = (res_seq, key)
        if self._base_cache is None or self._base_cache[0] != cache_key:
            self._base_cache = (cache_key, self.view.base(result, self.state)[0])
        return self._base_cache[1]

    def _input_view(self, captured: Captured, seq: int) -> np.ndarray:
        key = (seq, self.state.mirror)
        if self._input_cache is None or self._input_cache[0] != key:
            frame = mirrored(captured.frame, self.state.mirror)
            self._input_cache = (key, self.model.preprocess.model_view(frame.image))
        return self._input_cache[1]

    def _flags(self) -> list[str]:
        s, flags = self.state, []  # the overlay is described by its plugin's status flag
        for name, on in (("frozen", s.frozen), ("paused", s.paused), ("mirror", s.mirror), ("REC", s.recording)):
            if on:
                flags.append(name)
        position = self._shown_position()
        if position:
            flags.append(position)
        if not self.capture.status.signal:
            flags.append(f"no signal, reconnecting (try {self.capture.status.attempts})")
        if self.capture.status.ended:
            flags.append("end of input")
        if self.compute_thread.stats.error:
            flags.append(f"error: {self.compute_thread.stats.error}")
        skipped = getattr(self.source, "skipped", ())  # an image folder's unreadable files (SkippedFile)
        if skipped:
            names = ", ".join(s.path.name for s in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
            flags.append(f"skipped {len(skipped)} unreadable file{'s' if len(skipped) > 1 else ''}: {names}")
        if self.failure:
            flags.append(f"STOPPED: {self.failure}")
        text, until = self._message
        if text and time.monotonic() < until:
            flags.append(f"- {text}")
        return flags

    def _shown_position(self) -> str:
        """'frame N/M, T s' of the input on screen while a video is paused, or just after a seek or step."""
        _, captured = self.frames.get()
        if captured is None or not self.source.seekable:
            return ""
        if not self.state.paused and time.monotonic() - self._moved_at > MESSAGE_SECONDS:
            return ""
        return frame_position(captured.frame, self.source.frame_count)

    def _status_text(self, result: LiveResult | None) -> str:
        now = time.monotonic()
        text, at = self._status
        if now - at >= STATUS_REFRESH_S or not text or self._status_inputs != self._current_status_inputs(result):
            rates = (self.capture.meter.rate(), self.compute_thread.meter.rate(), self.display_meter.rate())
            model = f"{model_label(self.model)} ({self.compute.provider_label})"
            text = self.view.status_text(self.source.name, model, self.state, result, rates, self._flags())
            self._status = (text, now)
            self._status_inputs = self._current_status_inputs(result)
        return text

    def _current_status_inputs(self, result) -> tuple:
        """What makes the status line change at once (the rates change only every STATUS_REFRESH_S)."""
        return (self.state, id(result), self._message, self.capture.status, self.compute_thread.stats.error,
                len(getattr(self.source, "skipped", ())), self.failure, self._shown_position())

    def progress_strip(self) -> Rect | None:
        """Where task progress bars go: the layout's "progress" pane, else the bottom of the side pane
        (layouts written before it existed)."""
        panes = self.view.panes
        if "progress" in panes:
            return panes["progress"]
        side = panes.get("side")
        return None if side is None else Rect(side.x, side.y + side.h - 28, side.w, 28)

    def draw(self, force: bool = False) -> np.ndarray | None:
        """Compose and show the window if anything visible changed; returns the shown image."""
        cap_seq, captured = self.frames.get()
        res_seq, result = self.results.get()
        status = self._status_text(result)
        active = [(h.label, h.progress) for h in self.tasks.active() if h.cancellable and not h.abandoned]
        # tasks.version: a task's end or report changes what the pane providers show (a cancelled inversion's
        # partial picture, each stylised frame) even when nothing else on screen changed (a frozen input)
        key = (cap_seq, res_seq, self.state, status, tuple(active), self.capture.status, self.tasks.version)
        if key == self._drawn_key and not force:
            return None
        image = self._base(result, res_seq).copy()
        now = time.perf_counter()
        if captured is not None:
            if result is None or not self.view.input_held(self.state):
                self.view.paste(image, "input", self._input_view(captured, cap_seq))
            if result is not None:
                lag = captured.captured_at - result.captured.captured_at
                if lag * 1000 > self.config.live.stale_after_ms:
                    for pane in ("mosaic", "zoom", "predictions"):
                        if pane in self.view.panes:
                            mark_stale(image, self.view.panes[pane], f"stale {lag:.1f} s", self.stale_colour)
        if not self.capture.status.signal and "input" in self.view.panes:
            no_signal(image, self.view.panes["input"])
        if self.failure and "input" in self.view.panes:
            no_signal(image, self.view.panes["input"], f"stopped: {self.failure}")
        self.view.paste_status(image, status)
        strip = self.progress_strip()
        if strip is not None and (active or "progress" in self.view.panes):
            progress_bars(image, strip, active, self.accent_colour)
        if self.state.help:
            help_overlay(image, self.keys.help_lines())
        self.window.show(image)
        self._drawn_key = key
        if captured is not None and cap_seq != self._last_cap_seq:  # display fps: new input frames shown
            self.display_meter.tick()
            self.stats.displayed += 1
            self.stats.input_latency_ms.append((now - captured.captured_at) * 1000)
        if result is not None and res_seq != self._last_res_seq:
            self.stats.result_latency_ms.append((now - result.captured.captured_at) * 1000)
        self._last_cap_seq, self._last_res_seq = cap_seq, res_seq
        if self.recorder is not None:
            self.recorder.offer(image)
        return image

    # --- lifetime -------------------------------------------------------------------------------------
    def check_threads(self, now: float | None = None) -> None:
        """Notice a capture or compute thread that died: keep its error on screen for FAILURE_SHOWN_S,
        then quit (the app never runs on without its input)."""
        now = time.monotonic() if now is None else now
        if not self.failure:
            for role, thread in (("capture", self.capture), ("compute", self.compute_thread)):
                if thread.failure:
                    self.failure, self._failed_at = f"{role} failed: {thread.failure}", now
                    break
        elif now - self._failed_at >= FAILURE_SHOWN_S:
            self.quit = True

    def run(self) -> int:
        """The main loop until q, a closed window or a dead thread; returns the exit code (0, or
        EXIT_THREAD_FAILED after a thread died)."""
        self.window = Window(window_title(self.config.live.window_title, self.model))
        with self.compute:
            try:
                self.states.put(self.state)
                self.capture.start()
                self.compute_thread.start()
                self.window.show(self.view.empty())  # the first show also checks the window is painted
                while not self.quit:
                    code = self.window.poll_key(5)
                    if self.window.closed:
                        break
                    if code != -1:
                        self.on_key(code)
                    self.check_threads()
                    self.sync()
                    self.draw()
                    if self.options.max_frames and self.stats.displayed >= self.options.max_frames:
                        break
            finally:
                self.shutdown()
        return EXIT_THREAD_FAILED if self.failure else 0

    def shutdown(self) -> None:
        """Finalise a recording, stop and join the threads, release the source, close the window."""
        if self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            try:
                path = recorder.finish()
            except DeepvisError as error:
                print(f"deepvis: error: {error}", file=sys.stderr)
                path = None
            if path:
                print(f"deepvis: saved {path}")
        self.capture.stop()
        self.compute_thread.stop()
        for thread in (self.capture, self.compute_thread):
            if thread.is_alive():
                thread.join(timeout=5.0)
        self.tasks.shutdown()
        self.source.close()
        if self.window is not None:
            self.window.close()


def first_frame(source: FrameSource) -> Frame:
    """The source's first frame, or a one-line DeepvisError: a source that fails before its first
    frame is a start-up error, reported before the window opens."""
    deadline = time.monotonic() + (FIRST_FRAME_S if source.live else 0.0)
    while True:  # a camera may deliver nothing for its first reads while it starts
        try:
            frame = source.read()
        except DeepvisError:
            raise
        except Exception as error:  # noqa: BLE001 - a decoder's own exception, as one line
            raise DeepvisError(f"cannot read {source.name}: {failure_text(error)}") from None
        if frame is not None or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if frame is None:
        raise DeepvisError(f"{source.name} delivered no frame: check the source (deepvis live demo shows the "
                           "bundled clip)")
    return frame


def open_live(source_spec: str, config: Config, options: LiveOptions | None = None) -> LiveApp:
    """Check the display, load the model, open the source and read its first frame: every user error
    is raised here, before the window opens."""
    source = open_source(source_spec, loop=True)
    try:
        first = first_frame(source)
        check_gui()  # before the model loads: a missing display is reported in a fraction of a second
        torch.set_num_threads(max(1, config.live.torch_threads))
        set_cv_threads(1)
        model = model_from_config(config)
        layer = chosen_layer(model, config.model.layer)
        return LiveApp(source, model, config, layer, options, first=first)
    except BaseException:
        source.close()
        raise


def run_live(source_spec: str, config: Config, options: LiveOptions | None = None) -> LiveApp:
    """Open everything, run until the user quits or a thread dies; returns the app (its stats and
    ``exit_code``)."""
    app = open_live(source_spec, config, options)
    app.exit_code = app.run()
    return app

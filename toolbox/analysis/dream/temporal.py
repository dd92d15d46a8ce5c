"""Temporal stability for dreaming video: carry the previous frame's dream along the optical flow.

Per new frame (ksk-S / jeremicna scheme, reference §6):
  flow      = where each pixel of the new frame was in the previous frame (OpenCV DIS or Farneback)
  carried   = warp(previous dream - previous frame, flow)          the hallucination, moved
  confident = 1 - clip(|frame - warp(previous frame, flow)| / occlusion, 0, 1)   0 where the flow fails
  seed      = clip(frame + blend * confident * carried)
then a few ascent steps on the seed. The dream thus follows moving objects instead of smearing
(a plain blend ghosts), and keeps accumulating where the scene is still.
Images here are (H, W, 3) float32 BGR in [0, 255] or uint8 BGR.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import torch

from toolbox.models.registry import LoadedModel
from toolbox.analysis.dream.core import DreamEngine, rgb01_to_bgr
from toolbox.analysis.dream.presets import DreamSettings

FLOW_METHODS = ("dis", "farneback")


class FlowWarper:
    """Backward optical flow between consecutive frames and warping along it."""

    def __init__(self, method: str = "dis"):
        if method not in FLOW_METHODS:
            raise ValueError(f"flow method must be one of {', '.join(FLOW_METHODS)}")
        self.method = method
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST) if method == "dis" else None

    def flow(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        """(H, W, 2) float32: current(y, x) ~ previous(y + f[..., 1], x + f[..., 0])."""
        prev_gray = cv2.cvtColor(previous, cv2.COLOR_BGR2GRAY)
        cur_gray = cv2.cvtColor(current, cv2.COLOR_BGR2GRAY)
        if self._dis is not None:
            return self._dis.calc(cur_gray, prev_gray, None)
        # ksk-S's Farneback parameters.
        return cv2.calcOpticalFlowFarneback(cur_gray, prev_gray, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    @staticmethod
    def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """Sample ``image`` (previous frame's geometry) at the positions ``flow`` points to."""
        h, w = flow.shape[:2]
        grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        return cv2.remap(image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)


def temporal_seed(frame: np.ndarray, prev_frame: np.ndarray, prev_dream: np.ndarray, warper: FlowWarper,
                  blend: float = 0.9, occlusion: float = 40.0) -> np.ndarray:
    """(H, W, 3) uint8 frames -> (H, W, 3) float32 BGR in [0, 255]: the frame plus the carried dream."""
    flow = warper.flow(prev_frame, frame)
    carried = warper.warp(prev_dream.astype(np.float32) - prev_frame.astype(np.float32), flow)
    moved_prev = warper.warp(prev_frame, flow).astype(np.float32)
    error = np.abs(frame.astype(np.float32) - moved_prev).mean(axis=2, keepdims=True)
    confident = 1.0 - np.clip(error / occlusion, 0.0, 1.0)
    return np.clip(frame.astype(np.float32) + blend * confident * carried, 0.0, 255.0)


class FrameRate:
    """``tick()`` once per frame; ``fps``: a moving average of frames per second (0 before two ticks)."""

    def __init__(self):
        self.fps = 0.0
        self._last: float | None = None

    def tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            rate = 1.0 / max(now - self._last, 1e-6)
            self.fps = rate if self.fps == 0.0 else 0.8 * self.fps + 0.2 * rate
        self._last = now


def live_settings(settings: DreamSettings, steps: int = 2) -> DreamSettings:
    """A preset cut down for live video: one octave at the frame size, a few steps per frame."""
    return settings.replace(octaves=1, first_octave=0, steps=steps)


class LiveDreamer:
    """Dream a stream of frames with temporal stability: ``step(frame) -> dreamed frame``.

    settings: the per-frame schedule (``live_settings(preset)`` for live video; a full preset for
    offline video). max_side: dream at most this many pixels on the long side (speed), the result
    is resized back. The first frame, a size change, or ``reset()`` start from the raw frame.
    ``fps`` is a moving average of the frames this object has dreamed per second.
    """

    def __init__(self, model: LoadedModel, settings: DreamSettings, blend: float = 0.9, flow: str = "dis",
                 max_side: int | None = None, engine: DreamEngine | None = None):
        self.engine = engine or DreamEngine(model, settings)
        self._own_engine = engine is None
        self.settings = settings
        self.blend = blend
        self.max_side = max_side
        self.warper = FlowWarper(flow)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.rate = FrameRate()
        self.reset()

    def reset(self) -> None:
        self._prev_frame = None
        self._prev_dream = None

    def _work_size(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        if self.max_side is None or max(h, w) <= self.max_side:
            return frame
        k = self.max_side / max(h, w)
        return cv2.resize(frame, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)

    def step(self, frame: np.ndarray, cancel=None, progress=None) -> np.ndarray:
        """(H, W, 3) uint8 BGR frame -> (H, W, 3) uint8 BGR dream of it."""
        work = self._work_size(frame)
        if self._prev_frame is None or self._prev_frame.shape != work.shape:
            seed = work.astype(np.float32)
        else:
            seed = temporal_seed(work, self._prev_frame, self._prev_dream, self.warper, self.blend)
        rgb = torch.from_numpy(np.ascontiguousarray(seed[:, :, ::-1] / 255.0)).permute(2, 0, 1)[None]
        rgb = rgb.float().to(self.engine.device)
        out, _, _, _ = self.engine.run(rgb, progress=progress, cancel=cancel, generator=self.generator)
        dreamed = rgb01_to_bgr(out)
        self._prev_frame, self._prev_dream = work, dreamed
        self.rate.tick()
        if dreamed.shape != frame.shape:
            dreamed = cv2.resize(dreamed, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
        return dreamed

    @property
    def fps(self) -> float:
        return self.rate.fps

    def close(self) -> None:
        if self._own_engine:
            self.engine.close()

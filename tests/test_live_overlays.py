"""What the live window draws over its panes: progress bars in their own strip, the help overlay."""
from __future__ import annotations

import numpy as np

from toolbox.app.overlays import progress_bars
from toolbox.app.tasks import TaskRunner
from toolbox.config import load_config
from toolbox.render.layout import WINDOW_BACKGROUND, Rect

LAYOUT = load_config().layout


def overlaps(a: Rect, b: Rect) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


def test_progress_has_a_strip_of_its_own_that_no_pane_overlaps():
    strip = LAYOUT.panes["progress"]
    for name, rect in LAYOUT.panes.items():
        if name != "progress":
            assert not overlaps(strip, rect), f"progress bars would cover the {name} pane"


def test_bars_stay_in_their_strip_and_a_finished_task_leaves_no_bar():
    image = np.full((100, 200, 3), 77, np.uint8)
    strip = Rect(10, 60, 180, 28)
    progress_bars(image, strip, [("dream", 0.5), ("units", 0.25)], (0, 200, 0))
    inside = image[60:88, 10:190]
    outside = image.copy()
    outside[60:88, 10:190] = 77
    assert (outside == 77).all()  # nothing drawn outside the strip
    assert (inside == (0, 200, 0)).all(axis=2).sum() > 500  # the filled parts
    progress_bars(image, strip, [], (0, 200, 0))  # the tasks ended
    assert (image[60:88, 10:190] == WINDOW_BACKGROUND).all() and (image[:60] == 77).all()


def test_an_abandoned_task_is_no_longer_active_for_the_bars():
    runner = TaskRunner()
    release = __import__("threading").Event()
    handle = runner.start("slow", lambda task: release.wait(10), label="slow")
    assert handle.running and not handle.abandoned
    runner.cancel("slow")
    assert handle.abandoned  # still running until it checks, but no bar is drawn for it
    release.set()
    handle.join(5)


def test_the_help_overlay_is_opaque_and_shows_every_line_in_full():
    from toolbox.app.keys import load_key_table
    from toolbox.app.overlays import help_layout, help_overlay
    from toolbox.render.text import text_width

    lines = load_key_table(load_config().live.keys).help_lines()
    rng = np.random.default_rng(0)
    shots = []
    for _ in range(2):
        image = rng.integers(0, 256, (LAYOUT.height, LAYOUT.width, 3), dtype=np.uint8)
        help_overlay(image, lines)
        shots.append(image)
    assert np.array_equal(*shots)  # opaque: nothing of the window shows through
    scale, row_h, pieces = help_layout(lines, LAYOUT.width, LAYOUT.height)
    drawn_keys = [p.text for p in pieces if p.is_key]
    assert drawn_keys == [keys for keys, _ in lines]  # every key list, whole, in order
    drawn = " ".join(p.text for p in pieces if not p.is_key)
    assert drawn.split() == " ".join(text for _, text in lines).split()  # every word of every line
    for p in pieces:
        assert text_width(p.text, scale) <= p.width and 0 <= p.x and p.x + p.width <= LAYOUT.width
        assert row_h <= p.y <= LAYOUT.height - 4

"""The OpenCV HighGUI window: the only module that calls namedWindow, imshow or waitKeyEx.

Without a display OpenCV's Qt backend aborts the whole process (SIGABRT), and a headless
OpenCV build raises on the first window; ``check_gui()`` finds both first and says what to do.

The first window a process opens can stay black for good: on a busy machine the X events that
arrive while Qt's connection starts up (its event reader thread) are sometimes lost, the window's
MapNotify among them, and Qt then never counts the window as exposed and never paints it, while
imshow and waitKeyEx keep working. Measured under Xvfb with two busy-loop processes: a bare
namedWindow + imshow loop stayed black in 16 of 36 launches. ``Window`` therefore opens and closes
a 1x1 window first, which starts Qt's connection (that loop: 0 of 30 black), and once the first
image is shown, ``ensure_painted`` reads a few of the window's pixels back from the X server and,
if they are still unpainted, unmaps and maps the window so that Qt receives the events again
(deepvis live under the same load: 3 of 8 launches black before, see the report in the history).
"""
from __future__ import annotations

import os
import re
import socket
import sys

import time

import cv2
import numpy as np

from toolbox.app.keys import ShiftedKeys
from toolbox.errors import DeepvisError

HEADLESS_FIX = "pip uninstall -y opencv-python-headless && pip install --force-reinstall --no-deps opencv-python"
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype", "/usr/share/fonts")


def _x_display_reachable(display: str) -> bool:
    """True unless ``display`` is a local X display (":N") whose server socket does not answer."""
    match = re.fullmatch(r"(?:unix)?:(\d+)(?:\.\d+)?", display)
    if not match or not sys.platform.startswith("linux"):
        return True  # remote or unusual displays: let Qt decide
    path = f"/tmp/.X11-unix/X{match.group(1)}"
    for address in (path, "\0" + path):  # the filesystem socket, then the abstract one
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            try:
                sock.connect(address)
                return True
            except OSError:
                continue
    return False


def check_gui(environ=os.environ) -> None:
    """Raise a one-line DeepvisError when no window can open here (before any HighGUI call)."""
    if re.search(r"GUI:\s+NONE", cv2.getBuildInformation()):
        raise DeepvisError(f"this OpenCV build has no GUI (opencv-python-headless?): {HEADLESS_FIX}; "
                           "or use 'deepvis analyze SOURCE --out DIR' headless")
    if sys.platform.startswith("linux"):
        display = environ.get("DISPLAY", "")
        if not display and not environ.get("WAYLAND_DISPLAY"):
            raise DeepvisError("no display (DISPLAY is not set): run deepvis live in a desktop session or under "
                               "xvfb-run, or use 'deepvis analyze SOURCE --out DIR' headless")
        if not display:
            raise DeepvisError("Wayland without XWayland (DISPLAY is not set): OpenCV's window needs X11; "
                               "enable XWayland, or use 'deepvis analyze SOURCE --out DIR' headless")
        if not _x_display_reachable(display):
            raise DeepvisError(f"cannot reach the X display {display}: check DISPLAY, or use "
                               "'deepvis analyze SOURCE --out DIR' headless")


def start_gui_connection(title: str, events_ms: int = 100) -> None:
    """Open, show and close a 1x1 window, handling Qt's events for ``events_ms`` each side: the GUI
    toolkit's connection to the display is up before the real window is mapped (see the module's
    docstring)."""
    cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
    cv2.imshow(title, np.zeros((1, 1, 3), np.uint8))
    for _ in range(max(1, events_ms // 10)):
        cv2.waitKeyEx(10)
    cv2.destroyWindow(title)
    for _ in range(max(1, events_ms // 20)):
        cv2.waitKeyEx(10)


def painted_points(image: np.ndarray, count: int = 9) -> list[tuple[int, int]]:
    """Up to ``count`` (x, y) points of ``image`` that are not black, on a coarse grid: where a painted
    window cannot read back as 0 (the unpainted window's background)."""
    h, w = image.shape[:2]
    grid = [(int(w * (i + 0.5) / 3), int(h * (j + 0.5) / 3)) for j in range(3) for i in range(3)]
    grid += [(x, y) for y in range(0, h, max(1, h // 8)) for x in range(0, w, max(1, w // 8))]
    return [(x, y) for x, y in grid if image[y, x].any()][:count]


class Window:
    """One fixed-size window without toolbar, so a screenshot equals the shown image pixel for pixel."""

    def __init__(self, title: str):
        check_gui()
        # cv2 sets QT_QPA_FONTDIR to a folder its 5.x wheel no longer ships; point Qt at real fonts.
        fonts = next((d for d in FONT_DIRS if os.path.isdir(d)), None)
        if fonts:
            os.environ["QT_QPA_FONTDIR"] = fonts
        self.title = title
        try:
            start_gui_connection(f"{title} (starting)")
            cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        except cv2.error:
            raise DeepvisError(f"OpenCV cannot open a window: {HEADLESS_FIX}") from None
        self._shown: np.ndarray | None = None
        self._shifted = ShiftedKeys()
        self._keys: list[int] = []  # pressed while ensure_painted handled events

    def show(self, image: np.ndarray) -> None:
        """Show ``image``; the first time, also make sure the X server shows it (``ensure_painted``)."""
        first = self._shown is None
        cv2.imshow(self.title, image)
        self._shown = image
        if first and self.ensure_painted() is False:
            print("deepvis: warning: the window stays black on this display (the X server shows it unpainted)",
                  file=sys.stderr)

    def poll_key(self, wait_ms: int = 1) -> int:
        """The waitKeyEx code of a pressed key (Shift+letter as the upper-case letter), or -1.
        Also lets Qt process window events."""
        code = self._keys.pop(0) if self._keys else cv2.waitKeyEx(max(1, int(wait_ms)))
        if code == -1:
            return -1
        shifted = self._shifted(code, time.monotonic())
        return -1 if shifted is None else shifted

    def _handle_events(self, ms: int) -> None:
        for _ in range(max(1, ms // 10)):
            code = cv2.waitKeyEx(10)
            if code != -1:
                self._keys.append(code)

    def ensure_painted(self, attempts: int = 3, settle_ms: int = 300) -> bool | None:
        """After the first ``show``: True once the X server shows the window painted, remapping it up to
        ``attempts`` times while it is not (see the module's docstring); False if it stayed unpainted;
        None where this cannot be checked (not X11, no libX11, window not found)."""
        if self._shown is None or not sys.platform.startswith("linux") or not os.environ.get("DISPLAY"):
            return None
        from toolbox.app.x11_check import X11Display

        points = painted_points(self._shown)
        if not points:
            return None
        try:
            display = X11Display()
        except OSError:
            return None
        with display:
            self._handle_events(settle_ms)
            window = display.find_window(self.title)
            if window is None:
                return None
            for attempt in range(attempts + 1):
                values = [display.pixel(window, x, y) for x, y in points]
                if any(v is None for v in values):
                    return None
                if any(values):
                    return True
                if attempt < attempts:
                    display.remap(window)
                    self._handle_events(settle_ms)
            return False

    @property
    def closed(self) -> bool:
        """The user closed the window (only meaningful once something was shown)."""
        if self._shown is None:
            return False
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass

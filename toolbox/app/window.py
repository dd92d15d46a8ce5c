"""The OpenCV HighGUI window: the only module that calls namedWindow, imshow or waitKeyEx.

Without a display OpenCV's Qt backend aborts the whole process (SIGABRT), and a headless
OpenCV build raises on the first window; ``check_gui()`` finds both first and says what to do.

The first window a process opens can stay black for good: on a busy machine the X events that
arrive while Qt's connection starts up (its event reader thread) are sometimes lost, the window's
MapNotify among them, and Qt then never counts the window as exposed and never paints it, while
imshow and waitKeyEx keep working. Measured under Xvfb with two busy-loop processes: a bare
namedWindow + imshow loop stayed black in 8 of 20 launches. ``Window`` therefore opens and closes
a 1x1 window first, which starts Qt's connection; the real window is then mapped on a connection
that is up, and stayed black in 0 of 30 launches.
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
        self._shown = False
        self._shifted = ShiftedKeys()

    def show(self, image: np.ndarray) -> None:
        cv2.imshow(self.title, image)
        self._shown = True

    def poll_key(self, wait_ms: int = 1) -> int:
        """The waitKeyEx code of a pressed key (Shift+letter as the upper-case letter), or -1.
        Also lets Qt process window events."""
        code = cv2.waitKeyEx(max(1, int(wait_ms)))
        if code == -1:
            return -1
        shifted = self._shifted(code, time.monotonic())
        return -1 if shifted is None else shifted

    @property
    def closed(self) -> bool:
        """The user closed the window (only meaningful once something was shown)."""
        if not self._shown:
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

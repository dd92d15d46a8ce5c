"""Helpers for end-to-end GUI tests: a private Xvfb, the app as a subprocess, xdotool keys, screenshots.

The X server is started with ``-displayfd`` (it picks a free display and writes its number);
the pipe must be read up to the newline before closing it, or Xvfb dies writing the rest.

Screenshots are of the X root window, cropped to the app's window: what a person would see on the
screen, not what the app believes it shows. A window the toolkit never paints is black there (while
the app's own snapshots look fine), so ``wait_window`` fails on a window that stays black, and
``wait_moving`` on a window whose picture no longer changes while a video plays.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

TOOLS = ("Xvfb", "xdotool", "import")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


class Xvfb:
    def __init__(self, screen: str = "1600x900x24"):
        read_fd, write_fd = os.pipe()
        self.process = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", screen,
                                         "-nolisten", "tcp"], pass_fds=(write_fd,),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_fd)
        buf = b""
        deadline = time.monotonic() + 15
        while not buf.endswith(b"\n") and time.monotonic() < deadline:
            chunk = os.read(read_fd, 16)
            if not chunk:
                break
            buf += chunk
        os.close(read_fd)
        if not buf.strip():
            self.process.kill()
            raise RuntimeError("Xvfb did not report a display number")
        self.display = ":" + buf.decode().strip()
        self.env = {**os.environ, "DISPLAY": self.display}

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()


class LiveApp:
    """``deepvis live ...`` running on a display, with helpers to find, drive and capture its window."""

    def __init__(self, xvfb: Xvfb, args: list[str], cwd: Path, title: str = "deepvis"):
        self.xvfb = xvfb
        self.title = title
        self.log = open(cwd / "app.log", "w+")
        self.process = subprocess.Popen([sys.executable, "-m", "toolbox", "live", *args], env=xvfb.env, cwd=cwd,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.wid: str | None = None

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def _xdotool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["xdotool", *args], env=self.xvfb.env, capture_output=True, text=True,
                              check=check, timeout=10)

    def wait_window(self, timeout: float = 60, painted_within: float = 10) -> str:
        """The window's id once it is mapped and painted (its screen area is not all black: the app
        shows its grey background at once)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"app exited with {self.process.returncode}:\n{self.output()}")
            found = self._xdotool("search", "--onlyvisible", "--name", f"^{self.title}$", check=False)
            if found.returncode == 0 and found.stdout.split():
                self.wid = found.stdout.split()[0]
                self._xdotool("windowfocus", "--sync", self.wid)
                self.wait_for(lambda: not is_black(self.screen()), painted_within, 0.2,
                              "the window to be painted (it stayed black on the screen)")
                return self.wid
            time.sleep(0.2)
        raise AssertionError(f"window did not appear within {timeout} s:\n{self.output()}")

    def geometry(self) -> tuple[int, int, int, int]:
        """(x, y, width, height) of the window on the root window."""
        out = self._xdotool("getwindowgeometry", "--shell", self.wid).stdout
        values = dict(line.split("=", 1) for line in out.split())
        return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])

    def screen(self, path: Path | None = None) -> np.ndarray:
        """The window's area of a screenshot of the whole X screen (root window)."""
        path = path or Path(self.log.name).with_name("root.png")
        subprocess.run(["import", "-window", "root", str(path)], env=self.xvfb.env, check=True, timeout=10)
        image = cv2.imread(str(path))
        assert image is not None, f"screenshot {path} unreadable"
        x, y, w, h = self.geometry()
        return image[y : y + h, x : x + w]

    def wait_moving(self, rect, timeout: float = 10) -> None:
        """Wait until the screen shows a change inside ``rect`` of the window (a playing video's
        input pane): a window painted once and then frozen fails here."""
        first = region(self.screen(), rect).copy()
        self.wait_for(lambda: not np.array_equal(region(self.screen(), rect), first), timeout, 0.2,
                      "the picture on the screen to change (the window looks frozen)")

    def key(self, *names: str) -> None:
        self._xdotool("windowfocus", "--sync", self.wid)
        for name in names:
            self._xdotool("key", name)

    def close_window(self) -> None:
        send_wm_delete(self.xvfb.display, int(self.wid))

    def capture(self, path: Path) -> np.ndarray:
        """The window as it is on the screen (see ``screen``), also written to ``path``."""
        image = self.screen(path)
        cv2.imwrite(str(path), image)
        return image

    def wait_for(self, predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if isinstance(value, np.ndarray) or value:
                return value
            if self.process.poll() is not None:
                raise AssertionError(f"app exited with {self.process.returncode} waiting for {what}:\n{self.output()}")
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{self.output()}")

    def wait_idle(self, shots: Path, timeout: float = 20, quiet: float = 0.6) -> np.ndarray:
        """Wait until two screenshots ``quiet`` seconds apart are identical; returns the last."""
        previous = self.capture(shots / "idle.png")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(quiet)
            current = self.capture(shots / "idle.png")
            if np.array_equal(previous, current):
                return current
            previous = current
        raise AssertionError(f"window never became idle within {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


def send_wm_delete(display: str, window: int) -> None:
    """Ask a window to close the way a window manager's close button does (WM_DELETE_WINDOW).

    xdotool 3.2016 has no 'windowquit', and 'windowclose' destroys the X window under the
    toolkit's feet, which no user can do; so the ClientMessage is sent through libX11 directly."""
    import ctypes

    xlib = ctypes.cdll.LoadLibrary("libX11.so.6")
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    xlib.XInternAtom.restype = ctypes.c_ulong
    xlib.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    xlib.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    xlib.XFlush.argtypes = [ctypes.c_void_p]
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]

    class ClientMessage(ctypes.Structure):
        _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                    ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                    ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]

    class XEvent(ctypes.Union):
        _fields_ = [("client", ClientMessage), ("pad", ctypes.c_long * 24)]

    dpy = xlib.XOpenDisplay(display.encode())
    if not dpy:
        raise RuntimeError(f"cannot open display {display}")
    try:
        event = XEvent()
        event.client.type = 33  # ClientMessage
        event.client.window = window
        event.client.message_type = xlib.XInternAtom(dpy, b"WM_PROTOCOLS", 0)
        event.client.format = 32
        event.client.data[0] = xlib.XInternAtom(dpy, b"WM_DELETE_WINDOW", 0)
        xlib.XSendEvent(dpy, window, 0, 0, ctypes.byref(event))
        xlib.XFlush(dpy)
    finally:
        xlib.XCloseDisplay(dpy)


def is_black(image: np.ndarray) -> bool:
    """Nothing painted: every pixel (near) black. The app's own background is (18, 18, 18)."""
    return image.size == 0 or int(image.max()) <= 4


def region(image: np.ndarray, rect) -> np.ndarray:
    return image[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w]

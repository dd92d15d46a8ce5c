"""What the X server shows of a window, read through Xlib (ctypes), and a remap for a window the GUI
toolkit never painted.

Qt decides whether a window is exposed from the X events it receives; when the window's MapNotify is
lost (seen on busy machines right after Qt's connection starts), Qt never paints the window, although
imshow and waitKeyEx go on working. Reading a few of the window's pixels back from the server tells a
painted window from a black one; unmapping and mapping it again makes the server send the events anew.
"""
from __future__ import annotations

import ctypes
import ctypes.util

Z_PIXMAP = 2
ALL_PLANES = ctypes.c_ulong(~0 & 0xFFFFFFFFFFFFFFFF)
_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def _xlib():
    name = ctypes.util.find_library("X11") or "libX11.so.6"
    lib = ctypes.cdll.LoadLibrary(name)
    lib.XOpenDisplay.restype = ctypes.c_void_p
    lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    lib.XDefaultRootWindow.restype = ctypes.c_ulong
    lib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    lib.XQueryTree.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong),
                               ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.POINTER(ctypes.c_ulong)),
                               ctypes.POINTER(ctypes.c_uint)]
    lib.XFetchName.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_char_p)]
    lib.XFree.argtypes = [ctypes.c_void_p]
    lib.XGetImage.restype = ctypes.c_void_p
    lib.XGetImage.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int, ctypes.c_uint,
                              ctypes.c_uint, ctypes.c_ulong, ctypes.c_int]
    lib.XGetPixel.restype = ctypes.c_ulong
    lib.XGetPixel.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.XDestroyImage.argtypes = [ctypes.c_void_p]
    lib.XUnmapWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    lib.XMapWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    lib.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    lib.XSetErrorHandler.restype = ctypes.c_void_p
    lib.XSetErrorHandler.argtypes = [ctypes.c_void_p]
    return lib


class X11Display:
    """A private Xlib connection to ``DISPLAY``; X errors (a window that went away) are ignored while
    it is open. Raises OSError when there is no libX11 or no display."""

    def __init__(self):
        try:
            self._x = _xlib()
        except OSError as error:
            raise OSError(f"no libX11: {error}") from None
        self._dpy = self._x.XOpenDisplay(None)
        if not self._dpy:
            raise OSError("cannot open the X display")
        self._ignore = _ERROR_HANDLER(lambda display, event: 0)
        self._previous = self._x.XSetErrorHandler(ctypes.cast(self._ignore, ctypes.c_void_p))

    def close(self) -> None:
        self._x.XSetErrorHandler(self._previous)
        self._x.XCloseDisplay(self._dpy)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _children(self, window: int) -> list[int]:
        root, parent = ctypes.c_ulong(), ctypes.c_ulong()
        children, count = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
        if not self._x.XQueryTree(self._dpy, window, ctypes.byref(root), ctypes.byref(parent),
                                  ctypes.byref(children), ctypes.byref(count)):
            return []
        found = [children[i] for i in range(count.value)]
        if children:
            self._x.XFree(children)
        return found

    def _name(self, window: int) -> str | None:
        name = ctypes.c_char_p()
        if not self._x.XFetchName(self._dpy, window, ctypes.byref(name)) or not name.value:
            return None
        text = name.value.decode("utf-8", "replace")
        self._x.XFree(name)
        return text

    def find_window(self, title: str, depth: int = 3) -> int | None:
        """The first window named ``title`` within ``depth`` levels under the root (a window manager
        puts the client window one or two levels down), or None."""
        level = [self._x.XDefaultRootWindow(self._dpy)]
        for _ in range(depth):
            level = [child for window in level for child in self._children(window)]
            for window in level:
                if self._name(window) == title:
                    return window
        return None

    def pixel(self, window: int, x: int, y: int) -> int | None:
        """The server's pixel value at (x, y) of ``window`` (0xRRGGBB on TrueColor), None if unreadable."""
        image = self._x.XGetImage(self._dpy, window, x, y, 1, 1, ALL_PLANES, Z_PIXMAP)
        if not image:
            return None
        value = self._x.XGetPixel(image, 0, 0)
        self._x.XDestroyImage(image)
        return int(value)

    def remap(self, window: int) -> None:
        """Unmap and map the window again: the server sends MapNotify and Expose anew."""
        self._x.XUnmapWindow(self._dpy, window)
        self._x.XSync(self._dpy, 0)
        self._x.XMapWindow(self._dpy, window)
        self._x.XSync(self._dpy, 0)

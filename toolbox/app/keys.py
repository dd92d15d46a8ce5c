"""The key table: configs/keys.yaml -> {waitKeyEx code: action}, plus the help text.

One table binds every key, refuses a key bound twice or an unknown action, and generates
the help overlay, so the help can never disagree with the bindings.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from toolbox.config import CONFIG_DIR, read_yaml
from toolbox.errors import DeepvisError

# cv2.waitKeyEx codes under OpenCV's Qt backend (X11 keysyms; see feasibility.md).
NAMED_KEYS = {
    "Left": 65361, "Up": 65362, "Right": 65363, "Down": 65364,
    "PageUp": 65365, "PageDown": 65366, "Home": 65360, "End": 65367,
    "Escape": 27, "space": 32, "Return": 13, "Tab": 9, "BackSpace": 8,
    "Delete": 65535, "Insert": 65379,
    **{f"F{n}": 65469 + n for n in range(1, 13)},
}
KEY_NAMES = {code: name for name, code in NAMED_KEYS.items()}
SHIFT_CODES = (65505, 65506)  # Shift_L, Shift_R: OpenCV's Qt window reports them as keys of their own
SHIFT_HOLD_S = 1.5  # a letter this soon after a Shift event is read as its upper case
SHORT_NAMES = {"PageUp": "PgUp", "PageDown": "PgDn", "Escape": "Esc", "BackSpace": "Bksp", "space": "Space"}


def key_code(key: str | int) -> int:
    """A key as written in keys.yaml -> its waitKeyEx code."""
    if isinstance(key, bool):
        raise DeepvisError(f"key {key!r} is not a key name")
    if isinstance(key, int):
        return key
    key = str(key)
    if key in NAMED_KEYS:
        return NAMED_KEYS[key]
    if len(key) == 1 and 32 < ord(key) < 127:
        return ord(key)  # upper-case letters arrive through ShiftedKeys
    raise DeepvisError(f"unknown key name '{key}' (use one character or one of {', '.join(NAMED_KEYS)})")


def key_label(code: int) -> str:
    """Short human name of a code for the help screen."""
    if code in KEY_NAMES:
        name = KEY_NAMES[code]
        return SHORT_NAMES.get(name, name)
    if ord("A") <= code <= ord("Z"):
        return f"Shift+{chr(code).lower()}"
    return chr(code) if 32 < code < 127 else str(code)


class ShiftedKeys:
    """waitKeyEx codes -> codes with upper-case letters.

    OpenCV's Qt window never reports an upper-case letter: Shift+n arrives as a Shift event (65505)
    followed by 'n' (as long as the window is polled between the two: it keeps only the last key). A letter that follows a Shift event within ``SHIFT_HOLD_S`` seconds becomes its
    upper-case code ('N' = 78); backends that report 'N' themselves (GTK) pass through unchanged.
    """

    def __init__(self, hold_s: float = SHIFT_HOLD_S):
        self.hold_s = hold_s
        self._shift_at: float | None = None

    def __call__(self, code: int, now: float) -> int | None:
        """The code to act on, or None for the Shift event itself."""
        if code & 0xFFFF in SHIFT_CODES:
            self._shift_at = now
            return None
        shifted = self._shift_at is not None and now - self._shift_at <= self.hold_s
        self._shift_at = None
        if shifted and ord("a") <= code <= ord("z"):
            return code - 32
        return code


@dataclass(frozen=True)
class Binding:
    action: str
    codes: tuple[int, ...]
    help: str


class KeyTable:
    """Bindings in file order; ``action_for(code)`` maps a waitKeyEx code to an action name."""

    def __init__(self, bindings: Iterable[Binding], known_actions: Iterable[str]):
        self.bindings = tuple(bindings)
        known = set(known_actions)
        self._by_code: dict[int, str] = {}
        for binding in self.bindings:
            if binding.action not in known:
                raise DeepvisError(f"key table: unknown action '{binding.action}' "
                                   f"(known: {', '.join(sorted(known))})")
            for code in binding.codes:
                if code in self._by_code:
                    raise DeepvisError(f"key table: key '{key_label(code)}' is bound to both "
                                       f"'{self._by_code[code]}' and '{binding.action}'")
                self._by_code[code] = binding.action

    def action_for(self, code: int) -> str | None:
        """The action of a key code, or None. Modifier bits some platforms add above 16 bits are ignored."""
        if code < 0:
            return None
        return self._by_code.get(code) or self._by_code.get(code & 0xFFFF)

    def codes(self, action: str) -> tuple[int, ...]:
        return next((b.codes for b in self.bindings if b.action == action), ())

    def help_lines(self) -> list[tuple[str, str]]:
        """[(keys, help)] for the help overlay, in table order."""
        return [(", ".join(key_label(c) for c in b.codes), b.help) for b in self.bindings]


def _parse(data: dict, origin: str) -> list[Binding]:
    bindings = []
    for action, entry in data.items():
        if not isinstance(entry, dict) or set(entry) - {"keys", "help"} or "keys" not in entry:
            raise DeepvisError(f"{origin}: '{action}' must be {{keys: [...], help: text}}")
        keys = entry["keys"] if isinstance(entry["keys"], list) else [entry["keys"]]
        if not keys:
            raise DeepvisError(f"{origin}: '{action}' has no keys")
        bindings.append(Binding(str(action), tuple(key_code(k) for k in keys), str(entry.get("help", action))))
    return bindings


def key_table_path(name: str) -> Path:
    """A path as given, else a file under configs/."""
    path = Path(name)
    return path if path.is_file() or path.is_absolute() else CONFIG_DIR / name


def load_key_table(path: str | Path, known_actions: Iterable[str] | None = None) -> KeyTable:
    """Read and validate a key table file; ``known_actions`` defaults to every registered action."""
    if known_actions is None:
        from toolbox.app.state import ACTIONS

        known_actions = ACTIONS
    path = key_table_path(str(path))
    return KeyTable(_parse(read_yaml(path), str(path)), known_actions)

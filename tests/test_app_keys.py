"""The key table: one file binds every key, refuses conflicts, and generates the help."""
from __future__ import annotations

import pytest

from toolbox.app.keys import NAMED_KEYS, ShiftedKeys, key_code, key_label, load_key_table
from toolbox.app.state import ACTIONS
from toolbox.errors import DeepvisError


def write(tmp_path, text: str):
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    return path


def test_shipped_table_binds_the_required_keys_to_their_actions():
    table = load_key_table("keys.yaml")
    expected = {
        65365: "prev_layer", 65366: "next_layer", 65361: "channel_left", 65363: "channel_right",
        65362: "channel_up", 65364: "channel_down", ord("m"): "most_active", ord("z"): "zoom_cycle",
        ord("n"): "normalisation", ord("c"): "colormap", 32: "freeze", ord("p"): "pause",
        ord(","): "step_back", ord("."): "step_forward", ord("["): "seek_back", ord("]"): "seek_forward",
        ord("f"): "mirror", ord("s"): "snapshot", ord("r"): "record", ord("h"): "help", ord("q"): "quit",
        27: "cancel_or_quit", 8: "reset", 65360: "restart",
    }
    assert {code: table.action_for(code) for code in expected} == expected


def test_every_shipped_action_exists_and_has_help():
    table = load_key_table("keys.yaml")
    assert all(b.action in ACTIONS and b.help for b in table.bindings)


def test_help_lines_come_from_the_table_in_order():
    table = load_key_table("keys.yaml")
    lines = table.help_lines()
    assert len(lines) == len(table.bindings)
    assert lines[1] == ("PgDn, =", "next layer")
    assert ("q", "quit") in lines and ("Esc", "cancel the running task, else quit") in lines


def test_a_key_bound_twice_is_refused(tmp_path):
    path = write(tmp_path, "quit: {keys: [q], help: quit}\nhelp: {keys: [h, q], help: help}\n")
    with pytest.raises(DeepvisError, match="'q' is bound to both 'quit' and 'help'"):
        load_key_table(path)


def test_an_unknown_action_is_refused(tmp_path):
    with pytest.raises(DeepvisError, match="unknown action 'fly'"):
        load_key_table(write(tmp_path, "fly: {keys: [y], help: take off}\n"))


def test_upper_case_letters_are_shift_letters_and_unknown_key_names_are_refused():
    assert key_code("N") == 78 and key_label(78) == "Shift+n"
    with pytest.raises(DeepvisError, match="unknown key name"):
        key_code("Hyper")


def test_named_keys_are_the_qt_waitkeyex_codes():
    assert [NAMED_KEYS[k] for k in ("Left", "Up", "Right", "Down", "PageUp", "PageDown")] == list(range(65361, 65367))
    assert key_code("Escape") == 27 and key_code("space") == 32 and key_code(65474) == 65474


def test_modifier_bits_above_16_bits_are_ignored_and_no_key_maps_to_nothing():
    table = load_key_table("keys.yaml")
    assert table.action_for(0x100000 | ord("q")) == "quit"
    assert table.action_for(-1) is None and table.action_for(ord("y")) is None


def test_a_letter_right_after_a_shift_event_is_read_as_upper_case():
    shifted = ShiftedKeys(hold_s=1.0)
    assert shifted(65505, now=10.0) is None  # Qt reports Shift as a key of its own
    assert shifted(ord("n"), now=10.2) == ord("N")
    assert shifted(ord("n"), now=10.3) == ord("n")  # the Shift event is used up
    assert shifted(65506, now=11.0) is None and shifted(ord("m"), now=12.5) == ord("m")  # too late
    assert shifted(65505, now=13.0) is None and shifted(65361, now=13.1) == 65361  # not a letter
    assert shifted(ord("N"), now=14.0) == ord("N")  # a backend that reports 'N' itself

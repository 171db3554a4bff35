"""`cmet edit --face INDEX:TARGET` (repeated) and `--faces-plan plan.json`: several faces in one edit, each with its
own target, turned into `EditChoices.faces` (the model validates them, as the API's request does).

`INDEX` is the face's place from the left, `speaker` (whoever is speaking), or a box `x0,y0,x1,y1`; `TARGET`
an emotion, a blend or `from_audio`, with `@INTENSITY` after it if not 1: `--face 0:happy --face 1:sad@0.5`.
The plan file holds the API's `faces` list as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cmet_cli.console import EXIT_BAD_INPUT, fail
from cmet_core.options import SPEAKER


def _select(text: str) -> int | str | list[float]:
    if text == SPEAKER:
        return SPEAKER
    if "," in text:
        try:
            return [float(p) for p in text.split(",")]
        except ValueError:
            pass
    elif text.isdigit():
        return int(text)
    raise fail(f"--face wants INDEX, speaker or x0,y0,x1,y1 before the colon, got {text!r}", EXIT_BAD_INPUT)


def face_entry(text: str) -> dict[str, Any]:
    """One `--face INDEX:TARGET[@INTENSITY]` as a `faces` entry."""
    where, colon, target = text.partition(":")
    if not colon or not target:
        raise fail(f"--face wants INDEX:TARGET (e.g. 0:happy, speaker:from_audio), got {text!r}", EXIT_BAD_INPUT)
    emotion, at, intensity = target.rpartition("@") if "@" in target else (target, "", "")
    entry: dict[str, Any] = {"select": _select(where), "emotion": emotion}
    if at:
        try:
            entry["intensity"] = float(intensity)
        except ValueError:
            raise fail(f"--face: the intensity after @ must be a number, got {intensity!r}", EXIT_BAD_INPUT) from None
    return entry


def faces_of(face: list[str] | None, plan: Path | None) -> list[dict[str, Any]]:
    """The `faces` entries the flags give (empty: the edit has one face and its own target)."""
    if face and plan is not None:
        raise fail("give --face (repeated) or --faces-plan PLAN, not both", EXIT_BAD_INPUT)
    if plan is None:
        return [face_entry(text) for text in face or ()]
    try:
        entries = json.loads(plan.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise fail(f"--faces-plan {plan}: not a readable JSON file: {exc}", EXIT_BAD_INPUT) from None
    if not isinstance(entries, list) or not entries:
        raise fail(
            f"--faces-plan {plan}: the plan is a list of faces, [{{'select': 0, 'emotion': 'happy'}}, ...]",
            EXIT_BAD_INPUT,
        )
    return entries

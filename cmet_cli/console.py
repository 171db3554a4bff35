"""How every `cmet` command talks: one-line errors on stderr with fixed exit codes, never a traceback.

Exit codes: 0 done, 1 our side failed (models, disk, a bug), 2 the user's input or usage is wrong.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cmet_core.errors import ErrorCode, InputError
from cmet_core.networks.errors import ModelLoadError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

CLI_WORDS = {
    ErrorCode.PHOTO_NEEDS_SPEECH: "a photo has no lip motion of its own: give --lips-from SPEECH, a speech track "
    "its lips speak",
    ErrorCode.SPEECH_TRACK_UNUSED: "--pose-from is only used with --lips-from",
    ErrorCode.POSE_VIDEO_NEEDS_PHOTO: "--pose-from drives a photo; a video INPUT gives its own pose",
}
"""The CLI's words for the codes whose library message names the API's fields (`lips: speech`) and not flags."""


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def say(message: str) -> None:
    Console(stderr=True).print(message, highlight=False, markup=False, soft_wrap=True)


def out() -> Console:
    """Tables at full width when piped (rich would assume 80 columns and fold every cell)."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def run(action: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call a library function, turning its errors into one message and an exit code."""
    from cmet_core.modelsets.convert import CheckpointWarning  # deferred: torch

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CheckpointWarning)
            result = action(*args, **kwargs)
        for w in caught:
            if issubclass(w.category, CheckpointWarning):
                say(f"warning: {w.message}")
        return result
    except InputError as exc:
        raise fail(f"[{exc.code}] {CLI_WORDS.get(exc.code, str(exc))}", EXIT_BAD_INPUT) from None
    except ModelLoadError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except Exception as exc:  # a bug, but the CLI still answers with one line, not a traceback
        raise fail(f"unexpected {type(exc).__name__}: {exc} (please report this)") from None


@contextmanager
def stage_bars() -> Iterator[Progress]:
    """One progress bar a stage. When the command fails the bars are taken down before the display
    closes, so the error stays the last thing on the screen (not under a column of empty `0/?` bars)."""
    bars = Progress(
        TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    )
    with bars:
        try:
            yield bars
        except BaseException:
            for task in bars.task_ids:
                bars.remove_task(task)
            raise

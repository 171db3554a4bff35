"""`cmet eval`'s data: the labelled list it reads, a row per video, the summary per model set, and the table.

The list (CSV or JSON) names each input video, the edit's target, optional speech clips, the expected
emotion and, optionally, a finished output to read instead of running the edit. A row is the quality
report's numbers for one video; a side's summary is the researcher's table: emotion accuracy by the
classifier (the paper's Acc_emo, but judged by fer's FER-2013 classifier, not the paper's), mean identity
distance, lips correlation, steadiness, and seconds per video (the paper's AITV).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cmet_core.errors import ErrorCode, InputError
from cmet_core.quality.measures import TARGET_CLASS
from cmet_core.quality.report import QualityReport

ACCURACY_NOTE = (
    "emotion accuracy is judged by fer's FER-2013 classifier (a weak one), not by the paper's Acc_emo classifier"
)


class EvalItem(BaseModel):
    """One labelled video; relative paths are read from the list's folder."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Path
    target: str | None = Field(default=None, description="A library emotion or blend; none with speech clips.")
    speech: tuple[Path, ...] = ()
    expected: str | None = Field(default=None, description="The emotion the output should show; default: target.")
    output: Path | None = Field(default=None, description="A finished output: read, not edited again.")

    @field_validator("speech", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return tuple(p for p in value.split(";") if p) if isinstance(value, str) else value

    @property
    def label(self) -> str | None:
        return self.expected or self.target

    def resolved(self, folder: Path) -> EvalItem:
        def at(p: Path) -> Path:
            return p if p.is_absolute() else folder / p

        return self.model_copy(
            update={
                "input": at(self.input),
                "speech": tuple(at(p) for p in self.speech),
                "output": at(self.output) if self.output is not None else None,
            }
        )


def load_items(path: Path) -> list[EvalItem]:
    """The list at `path` (`.json`: a list of objects; otherwise CSV with a header row), paths resolved."""
    try:
        text = path.read_text()
        rows = json.loads(text) if path.suffix == ".json" else list(csv.DictReader(text.splitlines()))
        if not isinstance(rows, list) or not rows:
            raise ValueError("no rows")
        items = [EvalItem.model_validate({k: v for k, v in row.items() if v not in ("", None)}) for row in rows]
    except (ValueError, ValidationError, AttributeError) as exc:
        raise InputError(ErrorCode.INVALID_REQUEST, f"{path}: not a labelled list ({exc})") from None
    return [item.resolved(path.parent) for item in items]


class EvalRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    input: str
    target: str | None
    expected: str | None
    predicted: str | None = Field(description="The classifier's top class on the output.")
    correct: bool | None = Field(description="predicted is the expected emotion (None: not a class it knows).")
    identity: float | None
    lips: float | None
    steadiness: float | None
    seconds: float | None = Field(description="Wall time of the edit (None: a finished output was read).")


class EvalSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    side: str
    videos: int
    emotion_accuracy: float | None
    identity: float | None
    lips: float | None
    steadiness: float | None
    seconds_per_video: float | None
    rows: list[EvalRow]


def row_of(item: EvalItem, report: QualityReport, seconds: float | None) -> EvalRow:
    whole = report.emotion.segments[0].output if report.emotion.segments else {}
    predicted = max(whole.items(), key=lambda kv: kv[1])[0] if whole else None
    wanted = TARGET_CLASS.get(item.label) if item.label is not None else None
    return EvalRow(
        input=item.input.name,
        target=item.target,
        expected=item.label,
        predicted=predicted,
        correct=(predicted == wanted) if wanted is not None and predicted is not None else None,
        identity=report.identity.mean_distance,
        lips=report.lips.speech_correlation if report.lips.correlation is None else report.lips.correlation,
        steadiness=report.steadiness.ratio,
        seconds=None if seconds is None else round(seconds, 3),
    )


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(float(np.mean(known)), 4) if known else None


def summarize(side: str, rows: Sequence[EvalRow]) -> EvalSummary:
    judged = [float(r.correct) for r in rows if r.correct is not None]
    return EvalSummary(
        side=side,
        videos=len(rows),
        emotion_accuracy=_mean(judged),
        identity=_mean([r.identity for r in rows]),
        lips=_mean([r.lips for r in rows]),
        steadiness=_mean([r.steadiness for r in rows]),
        seconds_per_video=_mean([r.seconds for r in rows]),
        rows=list(rows),
    )


METRICS = (
    ("emotion_accuracy", "emotion accuracy (classifier)"),
    ("identity", "identity distance (lower is better)"),
    ("lips", "lips correlation"),
    ("steadiness", "jitter vs input (1 = as steady)"),
    ("seconds_per_video", "seconds per video (AITV)"),
)
"""The table's rows: a summary field and its label."""


def cell(value: object) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(summaries: Sequence[EvalSummary]) -> str:
    """The side-by-side table, then each side's rows."""
    lines = [f"> {ACCURACY_NOTE}.", "", "| metric | " + " | ".join(s.side for s in summaries) + " |"]
    lines.append("|---|" + "---|" * len(summaries))
    lines.append("| videos | " + " | ".join(str(s.videos) for s in summaries) + " |")
    for field, label in METRICS:
        lines.append(f"| {label} | " + " | ".join(cell(getattr(s, field)) for s in summaries) + " |")
    for s in summaries:
        lines += ["", f"### {s.side}", "", "| input | expected | predicted | identity | lips | steadiness | seconds |"]
        lines.append("|---|---|---|---|---|---|---|")
        for r in s.rows:
            cells = (r.input, r.expected, r.predicted, r.identity, r.lips, r.steadiness, r.seconds)
            lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"

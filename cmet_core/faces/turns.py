"""Who speaks when: the active speaker among several faces, chosen over each stretch of a clip from how well
each mouth's opening follows the soundtrack's speech energy, with hysteresis so the choice does not flicker.

Pure arithmetic on the readings (`edit/speaker.py` reads the mouths and the audio), so it is tested on made-up
signals and the API can show its `SpeakerTurn`s without the models.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

WINDOW_S = 0.8
"""A stretch over which mouths and speech are compared: a few syllables."""
HOP_S = 0.2
FOLLOW_WEIGHT = 0.5
"""A face's score in a stretch: how much its mouth moves (its opening's spread, as a share of the most moving
mouth's) plus this much of how its opening follows the speech energy (their correlation). The correlation alone
is a weak signal on real clips (speech energy leads or lags the lips by a syllable); a mouth that moves while
there is speech is the strong one, and the correlation breaks ties between two moving mouths."""
SWITCH_MARGIN = 0.15
"""Another face takes over only when it follows the speech better than the current speaker by this much ..."""
SWITCH_HOPS = 2
"""... in this many stretches in a row (so one noisy stretch never switches)."""
MIN_SCORE = 0.2
"""The first speaker must follow the speech at least this well (a correlation)."""
QUIET = 0.1
"""A stretch whose speech energy stays under this share of the clip's loud level is a pause: the choice holds."""
BACK_S = 0.2
"""A new turn starts this long before the centre of the first stretch its speaker led (that stretch already holds
more of its speech than of the last speaker's)."""
FADE_S = 0.2
"""A face's edit fades in and out over this long around its turn's ends."""


class SpeakerTurn(BaseModel):
    """From `start_s` to `end_s` (seconds of the output), `face` spoke: its place from the left in the first frame
    showing faces, as `faces[].select` counts."""

    model_config = ConfigDict(frozen=True)

    start_s: float = Field(ge=0)
    end_s: float
    face: int = Field(ge=0)


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 4 or np.std(a[keep]) < 1e-6 or np.std(b[keep]) < 1e-9:
        return None
    return float(np.corrcoef(a[keep], b[keep])[0, 1])


def _spread(values: np.ndarray) -> float:
    kept = values[np.isfinite(values)]
    return float(np.std(kept)) if kept.size >= 2 else 0.0


def scores(times: np.ndarray, openings: np.ndarray, energy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stretch centres, quiet stretches, scores (faces, stretches)): each face's mouth opening (NaN where it
    was not read) against the speech energy, both at `times` (`FOLLOW_WEIGHT`). A mouth not read scores -1."""
    end = float(times[-1]) if len(times) else 0.0
    centres = np.arange(min(WINDOW_S / 2, end / 2), max(end - WINDOW_S / 2, end / 2) + 1e-9, HOP_S)
    loud = float(np.percentile(energy, 90)) if len(energy) else 0.0
    quiet = np.zeros(len(centres), bool)
    table = np.full((openings.shape[0], len(centres)), -1.0)
    for s, centre in enumerate(centres):
        inside = np.abs(times - centre) <= WINDOW_S / 2
        quiet[s] = loud <= 0 or float(np.mean(energy[inside])) < QUIET * loud
        spread = np.array([_spread(openings[f, inside]) for f in range(openings.shape[0])])
        most = float(spread.max()) if spread.size else 0.0
        for f in range(openings.shape[0]):
            if not np.isfinite(openings[f, inside]).any():
                continue
            r = _correlation(openings[f, inside], energy[inside])
            table[f, s] = (spread[f] / most if most > 0 else 0.0) + FOLLOW_WEIGHT * (r if r is not None else 0.0)
    return centres, quiet, table


def turns(
    times: np.ndarray, openings: np.ndarray, energy: np.ndarray, labels: list[int], duration_s: float
) -> list[SpeakerTurn]:
    """Who speaks over the clip, as turns that cover it from the first chosen speaker on (the first one also
    covers the start); empty when no mouth follows the speech."""
    centres, quiet, table = scores(times, openings, energy)
    current: int | None = None
    challenger, lead, since = None, 0, 0.0
    changes: list[tuple[float, int]] = []
    for s, centre in enumerate(centres):
        if quiet[s]:
            continue
        best = int(np.argmax(table[:, s]))
        if current is None:
            if table[best, s] >= MIN_SCORE:
                current = best
                changes.append((0.0, best))
            continue
        if best != current and table[best, s] >= table[current, s] + SWITCH_MARGIN:
            if best != challenger:
                challenger, lead, since = best, 0, float(centre)
            lead += 1
            if lead >= SWITCH_HOPS:
                current, challenger, lead = best, None, 0
                changes.append((max(since - BACK_S, 0.0), best))
        else:
            challenger, lead = None, 0
    ends = [at for at, _ in changes[1:]] + [duration_s]
    return [
        SpeakerTurn(start_s=round(at, 3), end_s=round(end, 3), face=labels[face])
        for (at, face), end in zip(changes, ends, strict=True)
    ]


def presence(found: list[SpeakerTurn], face: int, times: np.ndarray) -> np.ndarray:
    """(frames,) in [0, 1]: how much of the speaker's edit face `face` (a label) gets at each frame time, 1 in
    its turns, fading over `FADE_S` across their ends."""
    weight = np.zeros(len(times))
    half = FADE_S / 2
    for turn in found:
        if turn.face != face:
            continue
        rise = np.clip((times - (turn.start_s - half)) / FADE_S, 0, 1) if turn.start_s > 0 else 1.0
        fall = np.clip(((turn.end_s + half) - times) / FADE_S, 0, 1)
        weight = np.maximum(weight, np.minimum(rise, fall))
    return weight

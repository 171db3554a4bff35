"""How much a timeline's boundaries move the face: the largest frame-to-frame change of the
expression track with `transition_s` 0 and 0.3, side by side, for the tiny connector and the
full-size one filled by rule cmet-fill-v1 (no trained weights here, so the sizes are the
rule's, the ratios what matters).

The face is held still (EDTalk's neutral preset from the test data on every frame), so only
the edit moves the track. Three places are read: a segment's free start (the input -> angry,
at 1 s), an angry -> happy switch (3 s), and well inside a segment (1.8-2.4 s: what the
connector moves from window to window anyway, the floor a boundary can reach).

    python -m bench.timeline_boundary
"""

from __future__ import annotations

import numpy as np
import torch

from cmet_core.edit.expression import expression_track
from cmet_core.emotion.library import load_builtin_library
from cmet_core.emotion.speech_plan import schedule_of
from cmet_core.emotion.timeline import ClipTimeline
from cmet_core.networks.connector import TINY_CONNECTOR, Connector, ConnectorConfig
from cmet_core.settings import get_settings
from cmet_core.verify.fill import fill_module

FPS = 25.0
FRAMES = 150


def steps(connector: Connector, still: torch.Tensor, transition_s: float) -> dict[str, float]:
    timeline = ClipTimeline.model_validate(
        {
            "segments": [
                {"start_s": 1.0, "end_s": 3.0, "target": "angry"},
                {"start_s": 3.0, "end_s": 5.0, "target": "happy"},
            ],
            "transition_s": transition_s,
        }
    )
    schedule = schedule_of(timeline, load_builtin_library(), lambda _clips: np.zeros((0, 1024)))
    with torch.inference_mode():
        exp = expression_track(connector, still, np.arange(FRAMES) / FPS, schedule)
    change = (exp[1:] - exp[:-1]).abs().amax(dim=1).numpy()
    t = np.arange(1, FRAMES) / FPS
    return {
        "free start": float(change[np.abs(t - 1.0) <= 0.6].max()),
        "switch": float(change[np.abs(t - 3.0) <= 0.6].max()),
        "inside": float(change[(t > 1.8) & (t < 2.4)].max()),
    }


def main() -> None:
    preset = get_settings().test_data / "expression_presets" / "neutral.npy"
    still = torch.from_numpy(np.load(preset)).float().reshape(1, -1).repeat(FRAMES, 1)
    torch.manual_seed(0)
    for label, cfg in (("tiny", TINY_CONNECTOR), ("full-size, rule-filled", ConnectorConfig())):
        connector = Connector(cfg)
        fill_module(connector, "connector")
        connector.eval()
        hard, soft = steps(connector, still, 0.0), steps(connector, still, 0.3)
        print(f"{label} connector: largest frame-to-frame change of the expression track")
        for place in hard:
            print(f"  {place:<10}  transition 0 s: {hard[place]:.3f}   0.3 s: {soft[place]:.3f}")


if __name__ == "__main__":
    main()

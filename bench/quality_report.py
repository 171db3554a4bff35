"""The quality report: its measures on the fixtures, and what it adds to an edit, side by side in one run.

* The report of a fixture clip against itself, against another speaker, and against a tiny-model edit of it
  (output that is noise: the report should say so).
* The added cost: the same tiny-model edit of each clip with `quality` off and on (default sampling), on the
  CPU; the ratio of the wall times, and the quality stage's seconds. The load average is printed too: on a
  shared machine it moves every timing.

    python -m bench.quality_report [--models DIR] [--clips mead_W009_038_cropped obama_uncropped]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cmet_core.edit.pipeline import Editor
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.options import EditChoices
from cmet_core.quality.assess import assess, spans_of
from cmet_core.quality.models import load
from cmet_core.quality.report import QualityReport
from cmet_core.settings import get_settings
from cmet_core.stages import Stage


def _line(label: str, r: QualityReport) -> str:
    emotion = r.emotion.segments[0]
    return (
        f"{label:<34} identity {r.identity.mean_distance} ({r.identity.verdict}), lips {r.lips.correlation} "
        f"({r.lips.verdict}), jitter x{r.steadiness.ratio} ({r.steadiness.verdict}), "
        f"p(target) {emotion.target_in} -> {emotion.target_out} ({r.emotion.verdict}), "
        f"faces {r.faces.tracked:.2f} ({r.faces.verdict}), {r.seconds:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=None, help="A model set (default: the models dir's tiny).")
    parser.add_argument("--clips", nargs="+", default=["mead_W009_038_cropped", "obama_uncropped"])
    args = parser.parse_args()
    video = get_settings().test_data / "video"
    other = video / "hdtf_RD_Radio1_000_5_cropped.mp4"
    models = args.models or get_settings().resolved_models_dir / "tiny"
    editor = Editor.load(models)
    load()
    happy = EmotionTarget(emotion="happy")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.clips:
            src = video / f"{name}.mp4"
            print(_line(f"{name} vs itself", assess(src, src, spans_of("happy", None, 1e9))))
            print(_line(f"{name} vs another speaker", assess(src, other, spans_of("happy", None, 1e9))))
            timings = {}
            for quality in (False, True):
                start = time.perf_counter()
                done = editor.edit(src, Path(tmp) / f"{name}.{quality}.mp4", happy, EditChoices(quality=quality))
                timings[quality] = time.perf_counter() - start
            assert done.quality is not None
            print(_line(f"{name} vs its tiny edit", done.quality))
            stage = done.stage_seconds[Stage.QUALITY]
            print(
                f"{name}: {done.frames} frames; edit {timings[False]:.2f} s without the report, {timings[True]:.2f} s "
                f"with it (x{timings[True] / timings[False]:.3f}); quality stage {stage:.2f} s = "
                f"{stage / (timings[True] - stage):.1%} of the rest of the edit; load average {os.getloadavg()[0]:.1f}"
            )


if __name__ == "__main__":
    main()

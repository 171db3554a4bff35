"""The share of a dub's wall time that Audio2Lip and its mel front end take, with full-size models.

    python -m bench.dubbing [--seconds 2] [--models DIR] [--device cpu]

Without --models it writes a full-size set filled by rule cmet-fill-v1 (`make_filled_set`:
EDTalk, connector and Audio2Lip at the published sizes) into a scratch folder. It dubs the kit's
25 fps face crop with `--seconds` of the kit's speech (a 16 kHz wav) and, to show the mel's cost
with a resample, the same speech as a 44.1 kHz stereo mp3, and prints each stage's seconds and
share of the edit's wall time side by side.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import soundfile

from cmet_core.edit.pipeline import Editor
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.modelsets.build import make_filled_set
from cmet_core.networks.runtime import RuntimeOptions
from cmet_core.options import EditChoices
from cmet_core.settings import get_settings
from cmet_core.stages import Stage
from tests.media_factory import make_speech


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="Speech length (the output's length).")
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    data = get_settings().test_data
    video, speech = data / "video" / "mead_W009_038_cropped.mp4", data / "video" / "mead_W009_038.wav"
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        if args.models is None:
            args.models = make_filled_set(root / "filled")
        wav, rate = soundfile.read(str(speech), dtype="float32")
        tracks = {"wav 16 kHz mono": root / "line.wav"}
        soundfile.write(str(tracks["wav 16 kHz mono"]), wav[: int(args.seconds * rate)], rate)

        tracks["mp3 44.1 kHz stereo"] = make_speech(root / "line.mp3", wav[: int(args.seconds * rate)])
        editor = Editor.load(args.models, RuntimeOptions(device=args.device))
        print(f"full-size filled models, device {editor.backbone.device}, {args.seconds:g} s of speech, 25 fps")
        for label, track in tracks.items():
            start = time.perf_counter()
            result = editor.edit(
                video, root / "out.mp4", EmotionTarget(emotion="happy"), EditChoices(lips="speech"), speech_track=track
            )
            wall = time.perf_counter() - start
            print(f"\n{label}: {result.frames} frames in {wall:.2f} s wall")
            for stage, seconds in result.stage_seconds.items():
                print(f"  {stage:<11} {seconds:8.3f} s  {100 * seconds / wall:6.2f} %")
            lips = result.stage_seconds.get(Stage.MEL, 0.0) + result.stage_seconds.get(Stage.LIPS, 0.0)
            print(f"  mel + Audio2Lip: {lips:.3f} s = {100 * lips / wall:.2f} % of the wall time")


if __name__ == "__main__":
    main()

"""HD faces: what the face restorer costs and what it wins, measured side by side in one run.

On the uncropped fixture clip upscaled to 1080p (1920x1080, the face about 550 px wide), the same
edit runs with `enhance: off` and `enhance: on`, full-size models, on the CPU:

* seconds per frame of the whole edit, each way, and the restorer stage's share of the edit with it;
* GFLOP per frame, counted by `torch.utils.flop_counter` (2 x MAC of convolutions and linear layers):
  the generator's fast path (motion encoding + render of one frame) against one 512 restorer forward;
* sharpness of the face region: the variance of the Laplacian inside the detected face box, for the
  input frame and for the outputs with the restorer off and on (mean over the frames).

Without `--models` the models are filled by rule cmet-fill-v1 (`make-filled`, a few minutes): then
the timings and FLOP are real, but the sharpness figures only check the plumbing (a rule-filled
restorer does not know faces). With `--models` naming a pulled set (`cmet models pull`) they are
the real figures. The load average is printed too: on a shared machine it moves every timing.

    python -m bench.hd_faces [--frames 4] [--models DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cmet_core.emotion.targets import EmotionTarget
from cmet_core.modelsets.sets import model_manifest
from cmet_core.settings import get_settings
from cmet_core.stages import Stage

if TYPE_CHECKING:
    from cmet_core.edit.pipeline import Editor

HD = (1920, 1080)


def make_hd_input(path: Path, frames: int, size: tuple[int, int] = HD, *, audio: bool = False) -> Path:
    """The first frames of the uncropped clip (back and forth past its 500), Lanczos-upscaled to `size`'s height
    and widened to its width by reflection; `audio`: with a tone, so writing the output has a track to carry."""
    # deferred: av, cv2
    import cv2

    from cmet_core.media.sample import write_clip
    from cmet_core.media.video import read_frames

    src = get_settings().test_data / "video" / "obama_uncropped.mp4"
    small = [f.image for f in read_frames(src) if f.index < frames]
    small += small[::-1]
    side = size[1]
    pad = (size[0] - side) // 2

    def hd(i: int) -> np.ndarray:
        up = cv2.resize(small[i], (side, side), interpolation=cv2.INTER_LANCZOS4)
        return cv2.copyMakeBorder(up, 0, 0, pad, size[0] - side - pad, cv2.BORDER_REFLECT_101)

    tone = (lambda t: 0.1 * np.sin(2 * np.pi * 220 * t)) if audio else None
    return write_clip(path, hd, frames, audio=tone)


def gflop(editor: Editor) -> tuple[float, float]:
    """(generator fast path per frame, restorer per 512 face), counted on one forward each."""
    # deferred: torch
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    assert editor.restorer is not None
    size = editor.face_size
    frame = torch.zeros(1, 3, size, size)
    source = editor.backbone.prepare_source(frame)
    with FlopCounterMode(display=False) as generator:
        editor.backbone.render(source, editor.backbone.encode(frame))
    with FlopCounterMode(display=False) as restorer:
        editor.restorer.restore(torch.zeros(1, 3, editor.restorer.size, editor.restorer.size))
    return generator.get_total_flops() / 1e9, restorer.get_total_flops() / 1e9


def face_sharpness(path: Path, boxes: list[tuple[int, int, int, int]]) -> float:
    """Mean over frames of the variance of the Laplacian of the grey image inside each frame's face box."""
    # deferred: av, cv2
    import cv2

    from cmet_core.media.video import read_frames

    values = []
    for frame, (x0, y0, x1, y1) in zip(read_frames(path), boxes, strict=True):
        grey = cv2.cvtColor(frame.image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
        values.append(float(cv2.Laplacian(grey, cv2.CV_64F).var()))
    return float(np.mean(values))


def face_boxes(path: Path) -> list[tuple[int, int, int, int]]:
    # deferred: av
    from cmet_core import faces
    from cmet_core.media.video import read_frames

    out = []
    with faces.FaceDetector() as detector:
        for frame in read_frames(path):
            found = detector.detect(frame.image)
            if not found:
                raise SystemExit(f"{path}: no face in frame {frame.index}")
            b = max(found, key=lambda d: d.box.area).box
            out.append((max(0, int(b.x0)), max(0, int(b.y0)), int(b.x1), int(b.y1)))
    return out


def run(frames: int, models: Path | None) -> None:
    # deferred: PIL, av, torch
    import torch

    from cmet_core.edit.pipeline import Editor
    from cmet_core.modelsets.build import make_filled_set
    from cmet_core.options import EditChoices

    threads = get_settings().num_threads
    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        start = time.perf_counter()
        set_dir = models if models is not None else make_filled_set(root / "filled")
        editor = Editor.load(set_dir)
        if editor.restorer is None:
            raise SystemExit(f"{set_dir} has no face restorer")
        filled = model_manifest(editor.models.path, editor.models.manifest, "gfpgan")[0].source.kind == "cmet-fill-v1"
        src = make_hd_input(root / "in.mp4", frames)
        print(f"models {set_dir} loaded, {frames}-frame 1920x1080 input made in {time.perf_counter() - start:.0f} s")
        boxes = face_boxes(src)
        width = np.median([b[2] - b[0] for b in boxes])
        print(f"face box about {width:.0f} px wide; torch threads {torch.get_num_threads()}")
        walls, results = {}, {}
        for mode in ("off", "on"):
            start = time.perf_counter()
            options = EditChoices(enhance="off" if mode == "off" else "on")
            results[mode] = editor.edit(src, root / f"{mode}.mp4", EmotionTarget(emotion="happy"), options)
            walls[mode] = time.perf_counter() - start
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in results[mode].stage_seconds.items())
            print(f"enhance {mode:>3}: {walls[mode] / frames:6.2f} s/frame ({walls[mode]:.1f} s wall; {stages})")
        enhance = results["on"].stage_seconds[Stage.ENHANCE]
        print(
            f"restorer stage: {enhance / frames:.2f} s/frame, {enhance / walls['on']:.0%} of the edit with it; "
            f"the edit with it takes {walls['on'] / walls['off']:.1f}x as long"
        )
        gen, res = gflop(editor)
        print(
            f"GFLOP per frame: generator fast path {gen:.1f}, restorer {res:.1f} per 512 face "
            f"({res / (gen + res):.0%} of both)"
        )
        sharp = {"input": face_sharpness(src, boxes)}
        sharp |= {mode: face_sharpness(root / f"{mode}.mp4", boxes) for mode in ("off", "on")}
        print(
            "face sharpness (variance of the Laplacian in the face box): "
            + ", ".join(f"{k} {v:.1f}" for k, v in sharp.items())
            + f"; on/off {sharp['on'] / sharp['off']:.2f}"
            + (" (rule-filled restorer: a plumbing check, not a quality figure)" if filled else "")
        )
        print("load average over 1, 5, 15 min: " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--models", type=Path, default=None)
    args = parser.parse_args()
    run(args.frames, args.models)


if __name__ == "__main__":
    main()

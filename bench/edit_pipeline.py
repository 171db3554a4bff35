"""The edit pipeline's two resource goals, each measured side by side in one run.

memory:   peak RSS of `cmet edit` on a 10 s and a 60 s input (tiny models, each edit in a fresh
          process); goal: 60 s / 10 s <= 1.2, i.e. the clip streams through.
overhead: with full-size models (rule-filled, unless --models names a real set), the share of
          wall time spent outside the networks (decode, faces, crop, paste, encode to H.264);
          goal <= 10%.

    python -m bench.edit_pipeline memory
    python -m bench.edit_pipeline overhead [--seconds 1] [--models DIR]

Inputs are built from the real uncropped clip in the test data (looped to length), so face
detection, crop and paste-back run as they do for users.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cmet_core.media.sample import write_clip
from cmet_core.media.video import read_frames
from cmet_core.settings import get_settings


def make_input(path: Path, seconds: float, fps: int = 25) -> Path:
    """The uncropped Obama clip, looped back and forth to `seconds` (no jump cut for the tracker)."""
    frames = [f.image for f in read_frames(get_settings().test_data / "video" / "obama_uncropped.mp4")]
    order = frames + frames[::-1]
    return write_clip(
        path,
        lambda i: order[i % len(order)],
        round(seconds * fps),
        fps,
        audio=lambda t: 0.1 * np.sin(2 * np.pi * 220 * t),
    )


def _child(src: str, dst: str, models: str) -> None:
    from cmet_core.edit.pipeline import Editor
    from cmet_core.emotion.targets import EmotionTarget

    result = Editor.load(Path(models)).edit(Path(src), Path(dst), EmotionTarget(emotion="happy"))
    print(f"{result.frames} {result.total_seconds:.2f}")


def _peak_rss_mib(src: Path, dst: Path, models: Path) -> tuple[float, str]:
    """Runs one edit in a new process; its peak RSS comes from wait4's rusage (kernel-measured)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.edit_pipeline", "_child", str(src), str(dst), str(models)],
        stdout=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    output = proc.stdout.read() if proc.stdout else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"edit of {src} failed with exit code {proc.returncode}")
    return usage.ru_maxrss / 1024, output.strip()


def memory() -> None:
    from cmet_core.modelsets.build import make_tiny_set

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        models = make_tiny_set(root / "tiny")
        peaks = {}
        for seconds in (10, 60):
            src = make_input(root / f"in{seconds}.mp4", seconds)
            peak, output = _peak_rss_mib(src, root / f"out{seconds}.mp4", models)
            frames, wall = output.split()
            peaks[seconds] = peak
            print(f"{seconds:>3} s input: {frames} frames, {float(wall):.1f} s, peak RSS {peak:.0f} MiB")
        print(f"peak RSS ratio 60 s / 10 s: {peaks[60] / peaks[10]:.3f} (goal <= 1.2)")


def overhead(seconds: float, models: Path | None) -> None:
    import torch

    from cmet_core.edit.pipeline import Editor
    from cmet_core.emotion.targets import EmotionTarget
    from cmet_core.modelsets.build import make_filled_set
    from cmet_core.options import EditChoices

    threads = get_settings().num_threads
    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        set_dir = models if models is not None else make_filled_set(root / "filled")
        editor = Editor.load(set_dir)
        src = make_input(root / "in.mp4", seconds)
        start = time.perf_counter()
        # the face restorer's cost is measured by bench.hd_faces; this goal is about the generator's path
        result = editor.edit(src, root / "out.mp4", EmotionTarget(emotion="happy"), EditChoices(enhance="off"))
        wall = time.perf_counter() - start
    outside = wall - result.network_seconds
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.stage_seconds.items())
    print(
        f"{result.frames} frames {result.width}x{result.height}, wall {wall:.1f} s "
        f"({wall / result.frames:.2f} s/frame): {stages}"
    )
    print(f"networks {result.network_seconds:.1f} s, outside the networks {outside:.1f} s")
    print(f"share of wall time outside the networks: {outside / wall:.3f} (goal <= 0.10)")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _child(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("memory")
    over = sub.add_parser("overhead")
    over.add_argument("--seconds", type=float, default=1.0)
    over.add_argument("--models", type=Path, default=None)
    args = parser.parse_args()
    if args.what == "memory":
        memory()
    else:
        overhead(args.seconds, args.models)


if __name__ == "__main__":
    main()

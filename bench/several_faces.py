"""One two-face edit against two one-face edits of the same clip, side by side in one run.

Before `faces`, a two-person clip took two jobs: the left face edited, then the right face edited on that
job's output; every frame decoded, detected, encoded and written twice. One job with `faces` decodes, detects,
encodes and writes once, tracks both faces in one face pass, encodes both crops of a frame in one forward and
renders and pastes both faces into the same frame, so its cost over one face is the second face's network work.

    python -m bench.several_faces [--turn-s 1.6] [--models DIR] [--repeats 2] [--threads 1]

The clip is two talkers of the test data taking turns side by side (`media/sample.py::write_turns`), 480x240 at
25 fps. `--models` defaults to the tiny random set (the networks then cost little: the figure shows what one
pass saves); a real set shows the network share. Printed per way: wall and CPU seconds, network seconds, per
stage; then the ratio of the one job to the two.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cmet_core.edit.editing import EditResult
from cmet_core.media.sample import TWO_TALKERS, write_turns
from cmet_core.options import EditChoices
from cmet_core.settings import get_settings

TARGETS = (("happy", 1.0), ("sad", 0.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turn-s", type=float, default=1.6, help="each talker's turn; the clip holds two")
    parser.add_argument("--models", type=Path, default=None, help="a model set (default: a tiny random one)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each way; the fastest counts")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()

    # deferred: PIL, torch
    import torch

    from cmet_core.edit.pipeline import Editor
    from cmet_core.emotion.targets import EmotionTarget
    from cmet_core.modelsets.build import make_tiny_set

    torch.set_num_threads(args.threads)
    videos = get_settings().test_data / "video"
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        editor = Editor.load(args.models if args.models is not None else make_tiny_set(root / "tiny"))
        talkers = [(videos / f"{name}_cropped.mp4", videos / f"{name}.wav") for name in TWO_TALKERS]
        src = write_turns(root / "two.mp4", talkers, args.turn_s)
        both = EditChoices(
            quality=False,
            faces=tuple({"select": i, "emotion": e, "intensity": x} for i, (e, x) in enumerate(TARGETS)),  # type: ignore[misc]
        )

        def one_job() -> list[EditResult]:
            return [editor.edit(src, root / "both.mp4", None, both)]

        def two_jobs() -> list[EditResult]:
            done, current = [], src
            for i, (emotion, intensity) in enumerate(TARGETS):
                out = root / f"face{i}.mp4"
                target = EmotionTarget(emotion=emotion, intensity=intensity)
                done.append(editor.edit(current, out, target, EditChoices(quality=False, face_index=i)))
                current = out
            return done

        one_job()  # warm-up: first forwards, allocator, detector graphs
        print(f"CPU: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} (shared with other work: figures vary)")
        print(f"input: two talkers taking turns, {2 * args.turn_s:g} s at 25 fps, 480x240; {args.threads} thread(s)")
        best: dict[str, tuple[float, float, list[EditResult]]] = {}
        for _ in range(args.repeats):
            for name, way in (("one job, two faces", one_job), ("two jobs, one face each", two_jobs)):
                start, cpu = time.perf_counter(), time.process_time()
                results = way()
                wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, cpu, results)
        for name, (wall, cpu, results) in best.items():
            stages: dict[str, float] = {}
            for result in results:
                for stage, seconds in result.stage_seconds.items():
                    stages[stage] = stages.get(stage, 0.0) + seconds
            network = sum(r.network_seconds for r in results)
            parts = ", ".join(f"{k} {v:.2f} s" for k, v in stages.items())
            print(f"{name}: wall {wall:.2f} s, CPU {cpu:.2f} s, networks {network:.2f} s: {parts}")
        (w1, c1, _), (w2, c2, _) = best["one job, two faces"], best["two jobs, one face each"]
        print(
            f"one two-face job / two one-face jobs: wall {w1 / w2:.2f}, CPU {c1 / c2:.2f}; "
            f"load {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()

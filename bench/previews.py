"""Contact sheet time per cell, with full-size models (rule-filled unless --models names a real set) on CPU.

Goal: under 1.5 s per cell on a 2-core CPU. Two sheets of the same frame run side by side in one
process: 1 x 1 and 3 x 3 (happy, sad, sarcastic x 0.5, 1, 1.5). The fixed part (probe, face pass,
encoding the frame and the identity source once) is paid by both; the difference over 8 cells is
the marginal cost of a cell (its share of the batched connector settle, one render and paste-back),
and the 3 x 3 sheet's whole time over 9 is the cost per cell a user waits for. Both run with 1 and
with 2 torch threads: on a CPU shared with other work, two threads can be slower than one. Beside wall
time the process's CPU time is printed: on a shared machine it is what the work costs, and with one
thread it is about the wall time the sheet would take on one idle core.

    python -m bench.previews [--seconds 2] [--models DIR] [--repeats 2] [--threads 1,2]

The input is the real uncropped clip of the test data (looped to length), so detection, crop and
paste-back run as they do for users; the face pass grows with the clip's length, the cells do not.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.edit_pipeline import make_input
from cmet_core.options import SheetChoice
from cmet_core.stages import Stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the input clip")
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each sheet; the fastest counts")
    parser.add_argument("--threads", default="1,2", help="torch thread counts to measure, side by side")
    args = parser.parse_args()

    # deferred: PIL, torch
    import torch

    from cmet_core.edit.pipeline import Editor
    from cmet_core.edit.preview import contact_sheet
    from cmet_core.modelsets.build import make_filled_set

    one = SheetChoice(emotions=("happy",), intensities=(1.0,))
    nine = SheetChoice(emotions=("happy", "sad", "sarcastic"), intensities=(0.5, 1.0, 1.5))
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        set_dir = args.models if args.models is not None else make_filled_set(root / "filled")
        editor = Editor.load(set_dir)
        src = make_input(root / "in.mp4", args.seconds)
        contact_sheet(editor, src, one)  # warm-up: first forwards, allocator, detector graphs
        size = contact_sheet(editor, src, one).rows[0][0].image.shape
        print(f"CPU: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} (shared with other work: figures vary)")
        print(f"input: {args.seconds:g} s at 25 fps, {size[1]}x{size[0]}")
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            best: dict[int, tuple[float, float, dict[Stage, float]]] = {}
            for _ in range(args.repeats):
                for choice in (one, nine):
                    start, cpu = time.perf_counter(), time.process_time()
                    sheet = contact_sheet(editor, src, choice)
                    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                    cells = len(sheet.cells)
                    if cells not in best or wall < best[cells][0]:
                        best[cells] = (wall, cpu, dict(sheet.stage_seconds))
            for cells, (wall, cpu, stages) in sorted(best.items()):
                parts = ", ".join(f"{k} {v:.2f} s" for k, v in stages.items())
                print(
                    f"{threads} thread(s), {cells} cell(s): wall {wall:.2f} s ({wall / cells:.2f} s per cell), "
                    f"CPU {cpu:.2f} s ({cpu / cells:.2f} s per cell): {parts}"
                )
            (w1, c1, _), (w9, c9, _) = best[1], best[9]
            print(
                f"{threads} thread(s): per cell of the 3x3 sheet: wall {w9 / 9:.2f} s, CPU {c9 / 9:.2f} s "
                f"(goal < 1.5 s); marginal cell: wall {(w9 - w1) / 8:.2f} s, CPU {(c9 - c1) / 8:.2f} s; "
                f"load {os.getloadavg()[0]:.1f}"
            )


if __name__ == "__main__":
    main()

"""Each backbone's edit side by side in one run: seconds and GFLOP per output frame, with the stage split.

Both backbones edit the same input (the uncropped test clip, looped) with full-size sets filled by rule
cmet-fill-v1 (`make-filled`: the published architectures, no weights needed), on the CPU at the threads
given (default 2, the threads of PD-FGC's kit anchor). Each edit runs twice: first under torch's FLOP counter
(which also warms up what an edit loads once), then timed (the stage split is the pipeline's own
`EditResult.stage_seconds`). The counter counts
2 x MAC of convolutions and matrix products as the kit's `perf_pdfgc.txt` does; its split is by the
networks that ran. The anchor is the original PD-FGC Tester: 108.31 GFLOP and about 1.30 s per output frame
at 2 threads (kit `perf_pdfgc.txt`), so the PD-FGC row also gives the ratio to it.

    python -m bench.backbones [--seconds 0.4] [--threads 2] [--backbones edtalk,pdfgc]

The quality report and the face restorer are off: this is the generator's path.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.edit_pipeline import make_input
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.options import EditChoices

ANCHOR_GFLOP = 108.31
ANCHOR_S = 1.30
"""The original PD-FGC Tester per output frame (kit perf_pdfgc.txt: 3 motion frames + 1 mel window + 1
generator frame; min wall at 2 threads on a shared 2-CPU machine)."""
CHOICES = EditChoices(enhance="off", quality=False)


@dataclass
class Row:
    backbone: str
    frames: int
    wall_s: float
    cpu_s: float
    """Process CPU time of the timed edit (all threads): on a loaded machine, closer to the work than wall time."""
    stages: dict[str, float]
    network_s: float
    gflop: float
    gflop_by_network: dict[str, float]

    @property
    def s_per_frame(self) -> float:
        return self.wall_s / self.frames

    @property
    def gflop_per_frame(self) -> float:
        return self.gflop / self.frames


def _by_network(counts: dict[str, dict[object, int]]) -> dict[str, float]:
    """GFLOP of each network that ran, by the class of the module it was called as (a root of the counter's
    module tree: a parent's count holds its children's)."""
    out: dict[str, float] = defaultdict(float)
    for name, ops in counts.items():
        if name != "Global" and "." not in name:
            out[name] += sum(ops.values()) / 1e9
    return dict(out)


def measure(backbone: str, src: Path, root: Path) -> Row:
    # deferred: torch
    from torch.utils.flop_counter import FlopCounterMode

    from cmet_core.edit.pipeline import Editor
    from cmet_core.modelsets.build import make_filled_set

    editor = Editor.load(make_filled_set(root / backbone, backbone=backbone))
    target = EmotionTarget(emotion="happy")
    counter = FlopCounterMode(display=False)
    with counter:  # first: it also warms up what an edit loads once (the face detector, allocations)
        editor.edit(src, root / f"{backbone}-counted.mp4", target, CHOICES)
    start, cpu = time.perf_counter(), time.process_time()
    result = editor.edit(src, root / f"{backbone}.mp4", target, CHOICES)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Row(
        backbone,
        result.frames,
        wall,
        cpu,
        {str(k): v for k, v in result.stage_seconds.items()},
        result.network_seconds,
        counter.get_total_flops() / 1e9,
        _by_network(counter.get_flop_counts()),
    )


def report(rows: list[Row]) -> list[str]:
    head = f"{'backbone':<8} {'frames':>6} {'s/frame':>8} {'CPU s/frame':>11} {'GFLOP/frame':>12}  stages (s/frame)"
    lines = [head]
    for r in rows:
        stages = ", ".join(f"{k} {v / r.frames:.3f}" for k, v in r.stages.items())
        lines.append(
            f"{r.backbone:<8} {r.frames:>6} {r.s_per_frame:>8.3f} {r.cpu_s / r.frames:>11.3f} "
            f"{r.gflop_per_frame:>12.2f}  {stages}"
        )
    for r in rows:
        nets = ", ".join(f"{k} {v / r.frames:.2f}" for k, v in sorted(r.gflop_by_network.items()))
        lines.append(f"  {r.backbone} GFLOP/frame by network (once-per-clip work spread over the frames): {nets}")
        lines.append(f"  {r.backbone} inside the networks {r.network_s / r.frames:.3f} s/frame")
    for r in rows:
        if r.backbone == "pdfgc":
            lines.append(
                f"  pdfgc vs the original Tester ({ANCHOR_GFLOP} GFLOP, {ANCHOR_S} s per output frame at 2 threads): "
                f"GFLOP x{r.gflop_per_frame / ANCHOR_GFLOP:.2f}, time x{r.s_per_frame / ANCHOR_S:.2f}"
            )
    if len(rows) == 2:
        a, b = rows
        lines.append(
            f"  {b.backbone} / {a.backbone}: time x{b.s_per_frame / a.s_per_frame:.2f}, "
            f"GFLOP x{b.gflop_per_frame / a.gflop_per_frame:.2f}"
        )
    return lines


def main() -> None:
    import torch  # deferred: the help needs no torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=0.4, help="Input length (25 fps).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbones", default="edtalk,pdfgc")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="cmet-bench-") as scratch:
        root = Path(scratch)
        src = make_input(root / "in.mp4", args.seconds)
        rows = [measure(name.strip(), src, root) for name in args.backbones.split(",")]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"CPU, {args.threads} threads, {args.seconds:g} s input at 25 fps, rule-filled sets; load average {load}")
    print("\n".join(report(rows)))


if __name__ == "__main__":
    main()

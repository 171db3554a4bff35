"""Throughput of K = 1, 2, 4 concurrent edits in one worker process, with and without the dynamic
batcher, side by side in one run (tiny models unless --models names a set).

    python -m bench.batching [--seconds 2] [--models DIR] [--batch 8] [--wait-ms 5]

On a CPU larger batches measured slower per frame (bench/runtime_options.py), so expect ratios near
or below 1 there; the batcher is for GPUs, where a batch of 8 costs little more than one frame.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from cmet_core.edit.pipeline import Editor
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.media.sample import write_sample_clip
from cmet_core.modelsets.sets import load_set
from cmet_core.networks.runtime import RuntimeOptions
from worker.batcher import BatchingBackbone, BatchPolicy


def run(editor: Editor, clip: Path, out: Path, k: int) -> float:
    """Frames per second of K edits of `clip` started together."""
    frames = [0] * k

    def job(i: int) -> None:
        frames[i] = editor.edit(clip, out / f"{k}-{i}.mp4", EmotionTarget(emotion="happy")).frames

    threads = [threading.Thread(target=job, args=(i,)) for i in range(k)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(frames) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--wait-ms", type=float, default=5.0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        if args.models is None:
            from cmet_core.modelsets.build import make_tiny_set

            args.models = make_tiny_set(root / "tiny")
        clip = write_sample_clip(root / "clip.mp4", seconds=args.seconds)
        runtime = RuntimeOptions(device=args.device, batch=args.batch)
        plain = Editor.load(args.models, runtime)
        models = load_set(args.models)
        backbone = BatchingBackbone(models.build_backbone(runtime), BatchPolicy(args.batch, args.wait_ms))
        batched = Editor(models, runtime, backbone=backbone)
        run(plain, clip, root, 1)  # warm-up (detector, caches)
        print(
            f"device {plain.backbone.device}, clip {args.seconds:g} s, "
            f"max batch {args.batch}, max wait {args.wait_ms:g} ms"
        )
        for k in (1, 2, 4):
            without, with_ = run(plain, clip, root, k), run(batched, clip, root, k)
            print(
                f"K={k}: without batcher {without:7.1f} frames/s, with {with_:7.1f} frames/s, "
                f"ratio {with_ / without:.2f}"
            )


if __name__ == "__main__":
    main()

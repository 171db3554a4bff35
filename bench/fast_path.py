"""Reference per-frame V render vs our fast path, same full-size rule-filled weights, one run.

Reference (the published inference.py way, per output frame): `compute_alpha_D` of the frame for
the expression track, then `test_EDTalk_V_use_exp_weight` (source, lip and pose frames encoded
again, the discarded EEM branch computed), batch 1. Fast path: the source is prepared once, each
frame is encoded once (lip, pose and expression from one pass), frames render in batches.

    python bench/fast_path.py [--frames 8] [--batch 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from cmet_core.backbones.edtalk.backbone import EDTalkBackbone
from cmet_core.backbones.edtalk.network import Generator
from cmet_core.networks.runtime import RuntimeOptions
from cmet_core.settings import get_settings
from cmet_core.verify.fill import fill_module


def load_frames(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    kit = np.load(get_settings().conformance_kit / "golden_edtalk.npz")
    frames = torch.from_numpy(kit["frames_u8"]).permute(0, 3, 1, 2).float() / 255.0
    frames = ((frames - 0.5) * 2.0).contiguous()
    frames = frames.repeat((n + len(frames) - 1) // len(frames), 1, 1, 1)[:n].contiguous()
    src = torch.from_numpy(kit["source_u8"][None]).permute(0, 3, 1, 2).float() / 255.0
    return frames, ((src - 0.5) * 2.0).contiguous()


def reference(gen: Generator, src: torch.Tensor, frames: torch.Tensor, exp_edit: torch.Tensor) -> torch.Tensor:
    out = []
    for i in range(len(frames)):
        f = frames[i : i + 1]
        exp, _, _ = gen.compute_alpha_D(f)
        out.append(gen.render_reference(src, f, f, exp + exp_edit))
    return torch.cat(out)


def fast(runner: EDTalkBackbone, src: torch.Tensor, frames: torch.Tensor, exp_edit: torch.Tensor) -> torch.Tensor:
    source = runner.prepare_source(src)
    m = runner.encode(frames)
    return runner.render(source, m.with_exp(m.exp + exp_edit))


def gflop_per_frame(fn, frames: int) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9 / frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1, help="render batch; 1 is fastest on 2 CPU cores")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    gen = Generator().eval()
    fill_module(gen, "edtalk")
    frames, src = load_frames(args.frames)
    exp_edit = torch.full((1, gen.cfg.exp_dim), 0.1)
    runner = EDTalkBackbone(gen, RuntimeOptions(device="cpu", batch=args.batch))

    with torch.no_grad():
        fast(runner, src, frames[:2], exp_edit)  # warm-up
        ref_gflop = gflop_per_frame(lambda: reference(gen, src, frames[:1], exp_edit), 1)
        fast_one = gflop_per_frame(lambda: fast(runner, src, frames[:1], exp_edit), 1)
        fast_gflop = 2 * gflop_per_frame(lambda: fast(runner, src, frames[:2], exp_edit), 2) - fast_one
        t0 = time.perf_counter()
        ref_img = reference(gen, src, frames, exp_edit)
        t_ref = (time.perf_counter() - t0) / args.frames
        t0 = time.perf_counter()
        fast_img = fast(runner, src, frames, exp_edit)
        t_fast = (time.perf_counter() - t0) / args.frames

    diff = (ref_img - fast_img).abs()
    print(f"device cpu, threads {args.threads}, frames {args.frames}, fast batch {args.batch}")
    print(f"reference  {t_ref:7.3f} s/frame  {ref_gflop:7.1f} GFLOP/frame")
    print(
        f"fast path  {t_fast:7.3f} s/frame  {fast_gflop:7.1f} GFLOP/frame "
        f"(+{fast_one - fast_gflop:.1f} GFLOP once per clip for the source)"
    )
    print(f"ratio fast/reference: time {t_fast / t_ref:.3f}  (target <= 0.45)")
    print(f"image agreement: max abs {diff.max():.2e}, mean abs {diff.mean():.2e}")


if __name__ == "__main__":
    main()

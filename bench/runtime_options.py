"""What each runtime option pays, side by side on this device: fp32 eager is the baseline.

CUDA: autocast bf16/fp16, channels_last, torch.compile, CUDA graphs (compile mode
reduce-overhead), batch 8. CPU: bf16 autocast, channels_last, torch.compile, batch 1 vs 4.
Prints seconds per frame (encode + render), the ratio to the baseline and the image error.

    python bench/runtime_options.py [--frames 8] [--threads 2] [--skip-compile]
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.fast_path import load_frames
from cmet_core.backbones.edtalk.backbone import EDTalkBackbone
from cmet_core.backbones.edtalk.network import Generator
from cmet_core.networks.runtime import RuntimeOptions, select_device
from cmet_core.verify.fill import fill_module


def candidates(device: torch.device, skip_compile: bool) -> list[tuple[str, RuntimeOptions]]:
    d = device.type
    if d == "cuda":
        rows = [
            ("fp32 batch 8", RuntimeOptions(device=d, batch=8)),
            ("fp32 batch 1", RuntimeOptions(device=d, batch=1)),
            ("tf32 batch 8", RuntimeOptions(device=d, batch=8, tf32=True)),
            ("bf16 batch 8", RuntimeOptions(device=d, batch=8, precision="bf16")),
            ("fp16 batch 8", RuntimeOptions(device=d, batch=8, precision="fp16")),
            ("fp16 channels_last", RuntimeOptions(device=d, batch=8, precision="fp16", channels_last=True)),
        ]
        if not skip_compile:
            rows += [
                ("fp16 compile", RuntimeOptions(device=d, batch=8, precision="fp16", compile="default")),
                (
                    "fp16 compile+cudagraphs",
                    RuntimeOptions(device=d, batch=8, precision="fp16", compile="reduce-overhead"),
                ),
            ]
        return rows
    rows = [
        ("fp32 batch 1", RuntimeOptions(device=d, batch=1)),
        ("fp32 batch 4", RuntimeOptions(device=d, batch=4)),
        ("fp32 channels_last", RuntimeOptions(device=d, batch=1, channels_last=True)),
        ("bf16 autocast", RuntimeOptions(device=d, batch=1, precision="bf16")),
    ]
    if not skip_compile:
        rows.append(("fp32 compile", RuntimeOptions(device=d, batch=1, compile="default")))
    return rows


def run(options: RuntimeOptions, frames: torch.Tensor, src: torch.Tensor) -> tuple[float, torch.Tensor]:
    gen = Generator()
    fill_module(gen, "edtalk")
    runner = EDTalkBackbone(gen, options)

    def once() -> torch.Tensor:
        source = runner.prepare_source(src)
        m = runner.encode(frames)
        return runner.render(source, m.with_exp(m.exp + 0.1))

    once()  # warm-up (and compilation)
    if runner.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    img = once()
    return (time.perf_counter() - t0) / len(frames), img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-compile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    frames, src = load_frames(args.frames)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{args.threads} threads"
    print(f"device {device} ({where}), frames {args.frames}")
    base_t: float | None = None
    base_img: torch.Tensor | None = None
    for name, options in candidates(device, args.skip_compile):
        try:
            t, img = run(options, frames, src)
        except Exception as exc:  # a backend that cannot run an option is a result, not a crash
            print(f"{name:<26} unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
            continue
        if base_t is None or base_img is None:
            base_t, base_img = t, img
        diff = (img - base_img).abs()
        print(
            f"{name:<26} {t:8.4f} s/frame  ratio {t / base_t:5.2f}  "
            f"vs baseline max {diff.max():.1e} mean {diff.mean():.1e}"
        )


if __name__ == "__main__":
    main()

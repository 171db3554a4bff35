"""The checks to run the day a GPU is lent: one command, one table, the same as JSON.

    python -m bench.device_check [--json device_check.json] [--quick]

Rows (each on CUDA; on a machine without one each says "no GPU", so the script runs anywhere and
`tests/test_device_check.py` runs it in CPU mode with `--quick` so it cannot rot):

* conformance on the device: full-size EDTalk (rule-filled) renders the kit's frames on CUDA in fp32
  and bf16; the row gives the largest difference from the CPU's fp32 render (the kit's goldens are
  the CPU's; `cmet conformance` checks those);
* the generator's frames per second at batch 1, 8 and 32, plain, `channels_last` and `torch.compile`;
* the restorer's (GFPGAN v1.4 size, 512) faces per second at batch 8;
* the data path at 1080p: NVDEC decoding (`av.codec.hwaccel`) and NVENC's H.264 encoding, frames per
  second each;
* an end-to-end edit of a 1080p clip (60 s; 2 s with `--quick`), tiny models, its seconds per stage;
* on any machine: the tensor paste-back (`faces/tensor_warp.py`) against OpenCV's, on this device.

The host-side cost per frame that stays on the CPU with the GPU path (decode to planes, the face's
rectangle to RGB and back, the encoder's input) is what `bench/data_path.py` measures; the last
row's stage split shows it next to the networks. Budget: under 8 minutes on one H100.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

NO_GPU = "no GPU"


@dataclass
class Row:
    check: str
    result: str
    value: float | None = None
    unit: str = ""


def _cuda() -> torch.device | None:
    return torch.device("cuda") if torch.cuda.is_available() else None


def _timed(fn: Callable[[], object], repeats: int) -> float:
    """Seconds per call, after a warm-up call, the device synchronised."""
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def conformance(device: torch.device, quick: bool) -> list[Row]:
    """CUDA fp32 and bf16 renders against the CPU's fp32 render of the same rule-filled generator."""
    # deferred: the model layer loads only for the checks that use it
    from bench.fast_path import load_frames
    from cmet_core.backbones.edtalk.backbone import EDTalkBackbone
    from cmet_core.backbones.edtalk.network import Generator
    from cmet_core.networks.runtime import RuntimeOptions
    from cmet_core.verify.fill import fill_module

    frames, src = load_frames(2 if quick else 8)
    gen = Generator()
    fill_module(gen, "edtalk")

    def render(options: RuntimeOptions) -> torch.Tensor:
        runner = EDTalkBackbone(gen, options)
        motion = runner.encode(frames)
        return runner.render(runner.prepare_source(src), motion.with_exp(motion.exp + 0.1)).float().cpu()

    reference = render(RuntimeOptions(device="cpu", batch=8))
    rows = []
    for precision in ("fp32", "bf16"):
        out = render(RuntimeOptions(device=device.type, batch=8, precision=precision))
        apart = float((out - reference).abs().max())
        rows.append(Row(f"conformance {precision}: max |CUDA - CPU| of the render", f"{apart:.2e}", apart))
    return rows


def generator(device: torch.device, quick: bool) -> list[Row]:
    # deferred: the model layer loads only for the checks that use it
    from bench.fast_path import load_frames
    from cmet_core.backbones.edtalk.backbone import EDTalkBackbone
    from cmet_core.backbones.edtalk.network import Generator
    from cmet_core.networks.runtime import RuntimeOptions
    from cmet_core.verify.fill import fill_module

    gen = Generator()
    fill_module(gen, "edtalk")
    rows = []
    for batch in (1, 8) if quick else (1, 8, 32):
        frames, src = load_frames(batch)
        for label, extra in (
            ("plain", {}),
            ("channels_last", {"channels_last": True}),
            ("compile", {"compile": "default"}),
        ):
            runner = EDTalkBackbone(gen, RuntimeOptions(device=device.type, batch=batch, precision="bf16", **extra))
            source = runner.prepare_source(src)

            def once(runner: EDTalkBackbone = runner, source: object = source, frames: torch.Tensor = frames) -> None:
                motion = runner.encode(frames)
                runner.render(source, motion.with_exp(motion.exp + 0.1))  # type: ignore[arg-type]

            fps = batch / _timed(once, 2 if quick else 5)
            rows.append(Row(f"generator bf16 batch {batch} {label}", f"{fps:.0f} frames/s", fps, "frames/s"))
    return rows


def restorer(device: torch.device, quick: bool) -> list[Row]:
    # deferred: the model layer loads only for the checks that use it
    from cmet_core.enhance.restore import RestorerRunner
    from cmet_core.networks.gfpgan import GFPGAN
    from cmet_core.networks.runtime import RuntimeOptions
    from cmet_core.verify.fill import fill_module

    net = GFPGAN()
    fill_module(net, "gfpgan")
    runner = RestorerRunner(net, RuntimeOptions(device=device.type, batch=8, precision="bf16"))
    faces = torch.zeros(8, 3, runner.size, runner.size)
    fps = 8 / _timed(lambda: runner.restore(faces), 2 if quick else 5)
    return [Row("restorer bf16 batch 8", f"{fps:.0f} faces/s", fps, "faces/s")]


def codecs(device: torch.device, quick: bool) -> list[Row]:  # noqa: ARG001 (a check's signature)
    """NVDEC decoding and NVENC encoding of a 1080p clip."""
    # deferred: media only for this check
    import av
    from av.codec.hwaccel import HWAccel

    from bench.hd_faces import make_hd_input

    frames = 25 if quick else 100
    with tempfile.TemporaryDirectory() as scratch:
        src = make_hd_input(Path(scratch) / "in.mp4", frames)
        start = time.perf_counter()
        with av.open(str(src), hwaccel=HWAccel(device_type="cuda")) as container:
            decoded = [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]
        decode_fps = len(decoded) / (time.perf_counter() - start)
        start = time.perf_counter()
        with av.open(str(Path(scratch) / "out.mp4"), "w") as out:
            stream = out.add_stream("h264_nvenc", rate=25)
            stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
            for i, planes in enumerate(decoded):
                frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        encode_fps = len(decoded) / (time.perf_counter() - start)
    return [
        Row("NVDEC decode 1080p H.264 to planes", f"{decode_fps:.0f} frames/s", decode_fps, "frames/s"),
        Row("NVENC h264_nvenc encode 1080p", f"{encode_fps:.0f} frames/s", encode_fps, "frames/s"),
    ]


def edit(device: torch.device, quick: bool) -> list[Row]:  # noqa: ARG001 (a check's signature)
    """An end-to-end edit of a 1080p clip on tiny models, seconds per stage."""
    # deferred: the pipeline only for this check
    from bench.hd_faces import make_hd_input
    from cmet_core.edit.pipeline import Editor
    from cmet_core.emotion.targets import EmotionTarget
    from cmet_core.modelsets.build import make_tiny_set
    from cmet_core.settings import get_settings

    seconds = 2 if quick else 60
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        src = make_hd_input(root / "in.mp4", seconds * 25, audio=True)
        editor = Editor.from_settings(get_settings(), models=make_tiny_set(root / "tiny"), device="cuda")
        start = time.perf_counter()
        result = editor.edit(src, root / "out.mp4", EmotionTarget(emotion="happy"))
        wall = time.perf_counter() - start
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.stage_seconds.items())
    fps = result.frames / wall
    return [Row(f"edit {seconds} s 1080p, tiny models: {stages}", f"{fps:.1f} frames/s", fps, "frames/s")]


def paste_back(device: torch.device | None, quick: bool) -> list[Row]:  # noqa: ARG001 (a check's signature)
    """The tensor paste-back on this machine's device against OpenCV's."""
    # deferred: faces only for this check
    from cmet_core.faces import tensor_warp, warp
    from cmet_core.faces.geometry import CropBox

    on = device or torch.device("cpu")
    rng = np.random.default_rng(0)
    frame = np.repeat(np.repeat(rng.integers(0, 256, (135, 240, 3), np.uint8), 8, 0), 8, 1)
    face = rng.integers(0, 256, (256, 256, 3), np.uint8)
    box, mask = CropBox(960.4, 500.2, 700.3), warp.feather_mask(256)
    expected = warp.paste_back(frame, face, box, mask)
    tensor = torch.from_numpy(frame).permute(2, 0, 1).to(on)
    ours = tensor_warp.paste_back(
        tensor, torch.from_numpy(face).permute(2, 0, 1).float().to(on), box, torch.from_numpy(mask).to(on)
    )
    apart = int(np.abs(ours.permute(1, 2, 0).cpu().numpy().astype(np.int16) - expected).max())
    return [Row(f"tensor paste-back on {on.type} vs OpenCV, 1080p", f"max {apart} grey levels", apart)]


CUDA_CHECKS: dict[str, Callable[[torch.device, bool], list[Row]]] = {
    "conformance on CUDA, fp32 and bf16": conformance,
    "generator frames/s": generator,
    "restorer faces/s": restorer,
    "NVDEC and NVENC at 1080p": codecs,
    "end-to-end edit, 1080p": edit,
}


def run(quick: bool) -> list[Row]:
    device = _cuda()
    rows: list[Row] = []
    for name, check in CUDA_CHECKS.items():
        if device is None:
            rows.append(Row(name, NO_GPU))
            continue
        try:
            rows += check(device, quick)
        except Exception as exc:  # one broken check must not hide the others' rows
            rows.append(Row(name, f"failed: {type(exc).__name__}: {exc}"[:200]))
    rows += paste_back(device, quick)
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=Path("device_check.json"))
    parser.add_argument("--quick", action="store_true", help="tiny inputs: a smoke run (CI's CPU mode)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = run(args.quick)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    width = max(len(row.check) for row in rows)
    print(f"device check on {device}, {time.perf_counter() - start:.0f} s")
    for row in rows:
        print(f"{row.check:<{width}}  {row.result}")
    args.json.write_text(json.dumps({"device": device, "rows": [asdict(row) for row in rows]}, indent=2))
    return rows


if __name__ == "__main__":
    main()

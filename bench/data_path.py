"""The data path around the networks: CPU per output frame outside them, split by step, old path and new
side by side in one run.

For each input (a 256x256 face crop, 720p and 1080p made from the uncropped fixture clip, each with
an audio track), tiny models so the networks cost almost nothing, `enhance off` unless `--enhance on`:

* CPU milliseconds per output frame outside the networks: the edit's process CPU time (every thread)
  less the CPU spent inside network forwards (with one torch thread, the forwards run in the
  calling thread, so `time.thread_time` counts them exactly). Unlike wall time this stays honest
  on a loaded machine;
* that CPU split by step (`cmet_core/meter.py`: each decoding pass, face detection, crops,
  paste-back, the restorer's warps, colour conversion, encoding, audio), counted in the thread that
  runs the step. CPU that helper threads burn (OpenCV's pool, libx264's frame threads) and Python's
  glue is the row "other threads and glue";
* wall milliseconds per frame, and the frames per second per CPU core the CPU figure implies.

The old path is the code at `BASELINE` (the commit that added this benchmark and its meter, before
any change of issue 22), unpacked from git into a scratch folder; the new one is this checkout.
Each edit runs in a fresh process (`_child`) with the same environment (`CMET_NUM_THREADS`, default
1 here): the old code applies it to torch only, as its benchmarks did; the new code applies its
thread policy.

    python -m bench.data_path [--frames 100] [--sizes crop,720p,1080p] [--enhance off] [--old REF]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import get_args

import numpy as np

BASELINE = "2eeb58655c8230ebe156a87b9a694f33167feaee"
"""The old path: the commit before the data path's changes (set when they landed)."""

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"crop": (256, 256), "720p": (1280, 720), "1080p": (1920, 1080)}


def _child(src: str, dst: str, models: str, enhance: str) -> None:
    """One edit in this process, on the `cmet_core` first on the path; prints its figures as JSON."""
    # deferred: the tree under test comes first on sys.path only in the child
    import torch

    from cmet_core import meter
    from cmet_core.edit.pipeline import Editor
    from cmet_core.emotion.targets import EmotionTarget
    from cmet_core.options import EditChoices
    from cmet_core.settings import get_settings

    settings = get_settings()
    # the tree's own file, not `find_spec`: an editable install's finder would answer for a module the old tree
    # lacks with the installed checkout's
    if (Path(meter.__file__).parent / "threads.py").exists():  # the new path's thread policy
        importlib.import_module("cmet_core.threads").apply_thread_policy(settings)
    elif settings.num_threads:  # the old path: torch only, as its benchmarks did
        torch.set_num_threads(settings.num_threads)
    editor = Editor.from_settings(settings, models=Path(models))
    fields: dict[str, object] = {"enhance": "on" if enhance == "on" else "off"}
    if "quality" in EditChoices.model_fields:  # the quality report is no part of the data path: both paths without
        fields["quality"] = False
    options = EditChoices.model_validate(fields)
    cpu0, wall0 = _cpu(), time.perf_counter()
    with meter.metering() as steps:
        result = editor.edit(Path(src), Path(dst), EmotionTarget(emotion="happy"), options)
    wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
    figures = {
        "frames": result.frames,
        "wall": wall,
        "cpu": cpu,
        "steps": steps.seconds,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stages": {str(k): v for k, v in result.stage_seconds.items()},
    }
    print(json.dumps(figures))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _old_tree(ref: str, into: Path) -> Path:
    """The code at `ref`, unpacked from this checkout's git."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _run(tree: Path, src: Path, dst: Path, models: Path, enhance: str) -> dict[str, object]:
    env = os.environ | {"PYTHONPATH": str(tree), "CMET_NUM_THREADS": os.environ.get("CMET_NUM_THREADS", "1")}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "_child", str(src), str(dst), str(models), enhance],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"edit with {tree} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _make_input(name: str, path: Path, frames: int) -> Path:
    # deferred: av, cv2 (the parent's own imports stay light)
    from bench.hd_faces import make_hd_input
    from cmet_core.media.sample import write_clip
    from cmet_core.media.video import read_frames
    from cmet_core.settings import get_settings

    if name == "crop":
        clip = get_settings().test_data / "video" / "mead_W009_038_cropped.mp4"
        images = [f.image for f in read_frames(clip) if f.index < frames]
        return write_clip(path, lambda i: images[i % len(images)], frames, audio=_tone)
    return make_hd_input(path, frames, SIZES[name], audio=True)


def _tone(t: np.ndarray) -> np.ndarray:
    tone: np.ndarray = 0.1 * np.sin(2 * np.pi * 220 * t)
    return tone


def _per_frame(figures: dict[str, object]) -> dict[str, float]:
    """ms per output frame: wall, CPU outside the networks, networks, each step."""
    frames = float(figures["frames"])  # type: ignore[arg-type]
    steps: dict[str, float] = dict(figures["steps"])  # type: ignore[call-overload]
    networks = steps.pop("networks", 0.0)
    outside = float(figures["cpu"]) - networks  # type: ignore[arg-type]
    rows = {"wall": float(figures["wall"]), "outside": outside, "networks": networks}  # type: ignore[arg-type]
    rows |= {f"  {name}": seconds for name, seconds in sorted(steps.items())}
    rows["  other threads and glue"] = outside - sum(steps.values())
    return {name: 1000 * seconds / frames for name, seconds in rows.items()}


def _print(size: str, frames: int, old: dict[str, object], new: dict[str, object]) -> dict[str, float]:
    a, b = _per_frame(old), _per_frame(new)
    threads = f"torch threads {old['torch_threads']} / {new['torch_threads']}"
    print(f"\n{size}: {frames} frames; ms per output frame ({threads})")
    print(f"{'':34}{'old':>9}{'new':>9}{'new/old':>9}")
    for name in dict.fromkeys([*a, *b]):
        x, y = a.get(name, 0.0), b.get(name, 0.0)
        label = {"wall": "wall", "outside": "CPU outside the networks", "networks": "CPU in the networks"}.get(
            name, name
        )
        ratio = f"{y / x:9.2f}" if x > 0.05 else f"{'':9}"
        print(f"{label:34}{x:9.1f}{y:9.1f}{ratio}")
    print(f"{'fps per core (data path)':34}{1000 / a['outside']:9.1f}{1000 / b['outside']:9.1f}")
    print(f"{'peak RSS MiB':34}{old['peak_rss_mib']:9.0f}{new['peak_rss_mib']:9.0f}")
    return {"outside": b["outside"] / a["outside"], "wall": b["wall"] / a["wall"]}


def _encode(frames: list[np.ndarray], dst: Path, preset: str, crf: int) -> float:
    """CPU seconds of libx264 (one thread, as the thread policy's default here) encoding yuv420p `frames`."""
    import av  # deferred: the parent's own imports stay light

    with av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width = frames[0].shape[0] * 2 // 3, frames[0].shape[1]
        stream.pix_fmt, stream.thread_count = "yuv420p", 1
        stream.options = {"crf": str(crf), "preset": preset}
        start = _cpu()
        for i, planes in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        return _cpu() - start


def _psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    mse = np.mean([np.mean((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b, strict=True)])
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def presets(src: Path, root: Path, crf: int) -> None:
    """Each offered x264 preset on the input's frames: CPU per frame, size, PSNR against `medium`'s output and
    against the input."""
    import av  # deferred: the parent's own imports stay light

    from cmet_core.media.video import X264Preset

    def planes(path: Path) -> list[np.ndarray]:
        with av.open(str(path)) as container:
            return [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]

    frames = planes(src)
    decoded: dict[str, list[np.ndarray]] = {}
    print(f"\nlibx264 at CRF {crf} on the {len(frames)} input frames of {src.name} (one thread)")
    print(f"{'preset':12}{'CPU ms/frame':>14}{'kB':>8}{'size/medium':>13}{'PSNR vs medium':>16}{'vs input':>10}")
    sizes: dict[str, int] = {}
    for preset in ("medium", *(p for p in get_args(X264Preset) if p != "medium")):
        dst = root / f"preset-{preset}.mp4"
        cpu = _encode(frames, dst, preset, crf)
        decoded[preset], sizes[preset] = planes(dst), dst.stat().st_size
        vs_medium = _psnr(decoded[preset], decoded["medium"]) if preset != "medium" else float("inf")
        print(
            f"{preset:12}{1000 * cpu / len(frames):14.1f}{sizes[preset] / 1000:8.0f}"
            f"{sizes[preset] / sizes['medium']:13.2f}{vs_medium:16.1f}{_psnr(decoded[preset], frames):10.1f}"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _child(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--sizes", default="crop,720p,1080p")
    parser.add_argument("--enhance", choices=("off", "on"), default="off")
    parser.add_argument("--old", default=BASELINE, help="git ref of the old path")
    args = parser.parse_args()
    from cmet_core.modelsets.build import make_tiny_set  # deferred: torch

    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        old_tree = _old_tree(args.old, root / "old")
        models = make_tiny_set(root / "tiny")
        print(f"old path: {args.old}; new path: {ROOT}; CMET_NUM_THREADS={os.environ.get('CMET_NUM_THREADS', '1')}")
        ratios = {}
        for size in args.sizes.split(","):
            src = _make_input(size, root / f"{size}.mp4", args.frames)
            old = _run(old_tree, src, root / f"{size}-old.mp4", models, args.enhance)
            new = _run(ROOT, src, root / f"{size}-new.mp4", models, args.enhance)
            ratios[size] = _print(size, args.frames, old, new)
        if "1080p" in args.sizes.split(","):
            presets(root / "1080p.mp4", root, 18)
    print()
    for size, ratio in ratios.items():
        print(f"{size}: CPU outside the networks new/old {ratio['outside']:.2f}, wall new/old {ratio['wall']:.2f}")
    after = os.getloadavg()
    print(f"load average (1 min) before {load[0]:.1f}, after {after[0]:.1f}, on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()

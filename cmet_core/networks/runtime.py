"""Runs the networks under device-specific options: precision, memory format, compile, batching.

Every option is switchable so the benchmark can measure what each one pays on a given device;
the defaults are the conformance settings (float32, TF32 off, NCHW, eager).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from cmet_core.media.mel import FPS as LIP_FPS
from cmet_core.media.mel import lip_windows
from cmet_core.networks.audio2lip import Audio2Lip, smooth_lips
from cmet_core.settings import CoreSettings

Precision = Literal["fp32", "bf16", "fp16"]
CompileMode = Literal["off", "default", "reduce-overhead", "max-autotune"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextmanager
def inference(device: torch.device, precision: Precision) -> Iterator[None]:
    """Inference mode, under autocast to bf16/fp16 unless the precision is fp32."""
    with torch.inference_mode():
        if precision == "fp32":
            yield
        else:
            with torch.autocast(device.type, dtype=_DTYPES[precision]):
                yield


def to_channels_last(module: torch.nn.Module) -> None:
    """Conv weights in NHWC, which cuDNN's tensor-core kernels prefer (5-D modulated weights stay as they are)."""
    for p in module.parameters():
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run the generator. `compile="reduce-overhead"` is torch.compile with CUDA graphs."""

    device: str = "auto"
    precision: Precision = "fp32"
    channels_last: bool = False
    compile: CompileMode = "off"
    batch: int | None = None
    tf32: bool = False

    @classmethod
    def from_settings(
        cls, settings: CoreSettings, device: str | None = None, batch: int | None = None
    ) -> RuntimeOptions:
        """The options the CMET_* settings name (device and batch overridable, e.g. by a CLI flag)."""
        return cls(
            device=device or settings.device,
            precision=settings.precision,
            channels_last=settings.channels_last,
            compile=settings.compile,
            batch=batch or settings.render_batch,
        )

    def batch_for(self, device: torch.device) -> int:
        """Frames per forward: 1 on CPU, where bigger batches measured 10-40% slower per frame."""
        if self.batch is not None:
            return self.batch
        return 8 if device.type == "cuda" else 1

    def select(self) -> torch.device:
        """The device these options name, refusing fp16 off CUDA and setting TF32 on it."""
        device = select_device(self.device)
        if self.precision == "fp16" and device.type != "cuda":
            raise ValueError("precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self.tf32
            torch.backends.cudnn.allow_tf32 = self.tf32
        return device


LipForward = Callable[[torch.Tensor], torch.Tensor]
"""(N, 1, H, W) speech windows -> (N, lip width) raw lip codes on the CPU: Audio2Lip's `LipRunner` (80 x 16 mel
windows), a server's batcher, or a backbone's own audio encoder (PD-FGC: 80 x 20)."""


@dataclass(frozen=True)
class SpeechLips:
    """How speech becomes a backbone's lip part: the front end's windows of a whole track, the network over
    chunks of them (`forward`, which a server may batch across jobs), then `finish` over the whole track.

    Audio2Lip (a set member) is one; a backbone whose lips always come from speech brings its own
    (`Backbone.speech_lips`, PD-FGC's audio encoder)."""

    windows: Callable[[np.ndarray], np.ndarray]
    """16 kHz mono float32 speech (a whole track) -> its windows (W, 1, H, W')."""
    forward: LipForward
    finish: Callable[[torch.Tensor, np.ndarray], torch.Tensor]
    """(the W windows' raw codes, output frame times in seconds from the track's start) -> one row per
    output frame: the track's smoothing and which window each frame shows."""


def lips_at(codes: torch.Tensor, times_s: np.ndarray, centre_s: float = 0.0) -> torch.Tensor:
    """Per time, the row of `codes` (one per 25 fps window, window i centred at `i / 25 + centre_s`) nearest it,
    clamped to the track."""
    rows = np.clip(np.rint((np.asarray(times_s, dtype=np.float64) - centre_s) * LIP_FPS), 0, codes.shape[0] - 1)
    return codes[torch.from_numpy(rows.astype(np.int64))]


def audio2lip_lips(forward: LipForward) -> SpeechLips:
    """Audio2Lip's lips: the C-MET mel windows (one per 25 fps frame), its forward, the original's smoothing."""
    return SpeechLips(
        windows=lambda wav: lip_windows(wav)[:, None],
        forward=forward,
        finish=lambda codes, times: lips_at(smooth_lips(codes), times),
    )


class LipRunner:
    """Audio2Lip on the generator's device, in float32 and inference mode (it is small: no other options)."""

    def __init__(self, net: Audio2Lip, device: torch.device) -> None:
        self.net = net.eval().to(device)
        self.device = device

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = self.net(windows.to(self.device)).reshape(windows.shape[0], -1)
        return out.float().cpu()

"""One frame loop for the edit, the dub, the clip preview and the contact sheet.

    frames in -> backbone render -> paste back into the frame's crop box -> per-frame stages -> out

Frames in are the decoded video (an edit, a clip preview's window), a photo repeated or the pose feed
in the plan's order (a dub), or the sheet's one frame repeated once per cell. The backbone renders
from one identity source, a row of the motion record per output frame (the parts the backbone owns,
the lip part replaced by the speech's in a dub) and every output frame's edited expression
(`Drive`). Out is a video written beside its destination and renamed at the end (`video_out`), or
images kept in memory (`Images`, the sheet). The per-frame stages (`frame_stages.py`) are prepared from
the input before the loop and applied to each chunk after paste-back; each is timed as its own stage.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from cmet_core import faces
from cmet_core.backbones.base import Backbone, MotionRecord, Source
from cmet_core.edit.editing import Clock, Parts, Progress
from cmet_core.edit.eyes import DrivenEyes
from cmet_core.edit.frame_stages import FrameStage, StageContext, chosen
from cmet_core.edit.passes import chunks
from cmet_core.faces import tensor_warp
from cmet_core.media.images import device_images, to_images
from cmet_core.media.overlap import Drain, prefetched
from cmet_core.media.video import Encoding, VideoInfo, VideoWriter
from cmet_core.media.yuv import Image, as_rgb
from cmet_core.meter import step
from cmet_core.options import EditChoices
from cmet_core.stages import Stage


@dataclass(frozen=True)
class Frame:
    """One output frame's background and where its faces go."""

    image: Image
    """The frame the faces are pasted into: a decoded frame (RGB or the decoder's planes), the photo, a frame of
    the pose feed. Paste-back may write into planes: each frame's are its own."""
    boxes: tuple[faces.CropBox | None, ...]
    """Where each face (one per `Drive` of the loop) goes; None: that face is left alone in this frame (it is
    away, or not the speaker now), and nothing of it is rendered."""
    index: int
    """The input frame it is (what the stages prepared from: their `apply` gets it)."""
    pts: int | None = None
    """Its timestamp in the output; None: the writer's own clock."""


@dataclass(frozen=True)
class Drive:
    """What the backbone renders the output frames from."""

    source: Source
    motion: MotionRecord
    rows: torch.Tensor
    """(N,) per output frame: the row of `motion` it renders (all its parts but `exp`, and the lip part
    without `lips`)."""
    exp: torch.Tensor
    """(N, exp_dim) per output frame: its edited expression."""
    lips: torch.Tensor | None = None
    """(N, lip width) per output frame: the backbone's lip part from speech (a dub's, or the video's own
    audio where the backbone's lips come from speech)."""
    smoothed: bool = False
    """The backbone's smoothing over time (`Backbone.smooth_clip`) has run, or must not: a contact sheet's
    cells are independent stills."""

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def _motion(self, backbone: Backbone, rows: slice | torch.Tensor) -> MotionRecord:
        motion = self.motion.index(self.rows[rows]).with_exp(self.exp[rows])
        if self.lips is not None:
            motion = motion.with_part(backbone.widths.lip_part, self.lips[rows])
        return motion

    def over_clip(self, backbone: Backbone) -> Drive:
        """Every output frame's motion, in output order, smoothed over time by the backbone once for the
        whole clip, so the render's chunks join without a seam (a few floats per frame: decision 0016)."""
        if self.smoothed:
            return self
        motion = backbone.smooth_clip(self._motion(backbone, slice(0, len(self))))
        return Drive(self.source, motion, torch.arange(len(self)), motion.exp, smoothed=True)

    def render(self, backbone: Backbone, rows: slice | torch.Tensor) -> torch.Tensor:
        """The output frames `rows` selects, as the backbone's images."""
        return backbone.render(self.source, self._motion(backbone, rows))


Faces = np.ndarray | torch.Tensor
"""A chunk's rendered faces of one drive (uint8 on the host, or 0..255 floats on the GPU)."""
Chunk = tuple[list[Frame], list[Faces | None]]
"""A chunk's frames and, per drive, the faces rendered for the frames that have its box (in order; None: no
frame has), on their way to paste-back."""


class FrameSink(Protocol):
    def write(self, image: Image, pts: int | None = None) -> None: ...


@dataclass
class Images:
    """The loop's frames kept in memory (a contact sheet's cells)."""

    images: list[np.ndarray] = field(default_factory=list)

    def write(self, image: Image, pts: int | None = None) -> None:  # noqa: ARG002 (a still has no clock)
        self.images.append(as_rgb(image))

    @contextmanager
    def open(self) -> Iterator[Images]:
        yield self


@contextmanager
def atomic_output(dst: Path) -> Iterator[Path]:
    """Write beside `dst` and rename at the end: a failed edit never leaves a half-written video."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        yield partial
        os.replace(partial, dst)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def video_out(dst: Path, like: VideoInfo, audio_from: Path | None, encoding: Encoding) -> Iterator[VideoWriter]:
    """A video at `dst`, `like` the given info, with the audio of `audio_from`; renamed into place at the end."""
    with atomic_output(dst) as partial, VideoWriter(partial, like, audio_from, encoding) as writer:
        yield writer


class FrameLoop:
    """One edit's frame loop: its stages prepared from the input, then every output frame rendered,
    pasted back, passed through the stages and written."""

    def __init__(
        self,
        backbone: Backbone,
        face_size: int,
        stages: Sequence[FrameStage],
        clock: Clock,
        progress: Progress,
        eyes_off: frozenset[str] = frozenset(),
        eyes: DrivenEyes | None = None,
    ) -> None:
        self.backbone, self.face_size, self.stages = backbone, face_size, list(stages)
        self.clock, self.progress = clock, progress
        self.eyes_off = eyes_off
        """The eye motions the render switches off (`EyeChoice`; checked against the backbone before)."""
        self.eyes = eyes
        """The eye motions the render takes from a driving clip, one row per output frame."""

    @classmethod
    def of(
        cls,
        editor: Parts,
        options: EditChoices,
        face_side: float,
        clock: Clock,
        progress: Progress,
        eyes: DrivenEyes | None = None,
    ) -> FrameLoop:
        """The loop of one edit with the editor's stages that apply to it (`face_side`: the first frame's
        crop box side, in input pixels; `eyes`: a driving clip's eye motion at each output frame)."""
        context = StageContext(options, editor.restorer, face_side, editor.face_size)
        stages = chosen(editor.stages, context)
        return cls(editor.backbone, editor.face_size, stages, clock, progress, options.eyes_off(), eyes)

    def prepare(
        self,
        images: Callable[[], Iterable[np.ndarray]],
        *tracks: Sequence[faces.CropBox],
        shown: Sequence[np.ndarray] | None = None,
    ) -> None:
        """Each stage's preparation from the input: `images()` gives its frames afresh (one per box), `tracks` one
        box sequence per face, `shown` where each face is edited (default: everywhere)."""
        for stage in self.stages:
            with self.clock.stage(stage.name):
                stage.prepare(images(), tracks, self.progress, shown)

    @property
    def takes_planes(self) -> bool:
        """Whether frames may come as the decoder's planes (`Yuv420`): with no per-frame stage, only the face's
        rectangle is ever turned RGB; the stages work on whole RGB frames, decoded as such."""
        return not self.stages

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The size of the frames that come out of the stages, for composited frames of `width` x `height`."""
        for stage in self.stages:
            width, height = stage.output_size(width, height)
        return width, height

    def run(
        self,
        drives: Sequence[Drive],
        frames: Iterable[Frame],
        out: AbstractContextManager[FrameSink],
        *,
        chunk: int,
        crop_input: bool,
    ) -> None:
        """Every output frame of `drives` (one per face, each frame with one box per drive), each pasted into the
        next of `frames`, into `out`, `chunk` frames at a time; timed as "render", less the stages' applies (each
        counted as its own stage). Each chunk renders every face it shows, and every face is pasted into its
        frame before the stages and the write: several faces cost their renders, not another decode or encode.

        Three threads overlap (`media/overlap.py`): decoding the next chunk, rendering this one (here), and
        pasting back, the stages and writing the one before; each queue holds one chunk."""
        total = len(drives[0])
        drives = [drive.over_clip(self.backbone) for drive in drives]
        if self.eyes_off:
            drives = [replace(d, motion=self.backbone.switch_off(d.motion, self.eyes_off)) for d in drives]
        if self.eyes is not None:
            if len(self.eyes.motion) != total:
                raise ValueError(f"driving eyes for {len(self.eyes.motion)} frames, the output has {total}")
            eyes = self.eyes
            drives = [replace(d, motion=self.backbone.take_eyes(d.motion, eyes.motion, eyes.parts)) for d in drives]
        mask = faces.paste_mask(self.face_size, crop_input, windowed=self.backbone.framing.window is not None)
        device = self.backbone.device
        on_device = device.type == "cuda"  # paste-back as tensor operations where the faces are rendered
        device_mask = torch.from_numpy(mask).to(device)
        applied: dict[Stage, float] = dict.fromkeys((stage.name for stage in self.stages), 0.0)

        def paste(image: Image, face: np.ndarray | torch.Tensor, box: faces.CropBox) -> Image:
            if isinstance(face, torch.Tensor):
                return tensor_warp.paste_frame(image, face, box, device_mask)
            return faces.paste_frame(image, face, box, mask)

        def finish(item: Chunk, sink: FrameSink) -> None:
            part, rendered = item
            with step("paste back"):
                pasted: list[Image] = [frame.image for frame in part]
                for k, drawn in enumerate(rendered):
                    shown = [j for j, frame in enumerate(part) if frame.boxes[k] is not None]
                    for j, face in zip(shown, drawn if drawn is not None else (), strict=True):
                        box = part[j].boxes[k]
                        assert box is not None
                        pasted[j] = paste(pasted[j], face, box)
            indices = [frame.index for frame in part]
            if self.stages:
                images: list[Image] = list(self._staged([as_rgb(image) for image in pasted], indices, applied))
            else:
                images = pasted
            for frame, image in zip(part, images, strict=True):
                sink.write(image, frame.pts)

        done = 0
        with self.clock.stage(Stage.RENDER), out as sink, Drain[Chunk](lambda item: finish(item, sink), 1) as drain:
            for part in prefetched(chunks(iter(frames), chunk), 1):
                rendered: list[Faces | None] = []
                with self.clock.networks():
                    for k, drive in enumerate(drives):
                        shown = [done + j for j, frame in enumerate(part) if frame.boxes[k] is not None]
                        if not shown:
                            rendered.append(None)
                            continue
                        rows = slice(done, done + len(part)) if len(shown) == len(part) else torch.tensor(shown)
                        batch = drive.render(self.backbone, rows)
                        rendered.append(device_images(batch) if on_device else to_images(batch))
                drain.put((part, rendered))
                done += len(part)
                self.progress(Stage.RENDER, done, total)
        for name, seconds in applied.items():
            self.clock.move(seconds, Stage.RENDER, name)

    def _staged(self, images: list[np.ndarray], indices: list[int], applied: dict[Stage, float]) -> list[np.ndarray]:
        """The per-frame stages on a chunk of composited RGB frames, each one's time added to `applied`."""
        for stage in self.stages:
            start = time.perf_counter()
            with self.clock.networks():
                images = stage.apply(images, indices)
            applied[stage.name] += time.perf_counter() - start
        return images

"""The passes an edit and a dub run before the frame loop: where the face is, every frame's motion, the
edited expression.

Each pass decodes the input again instead of holding it in memory (decoding runs at several hundred
frames per second, far faster than the networks), so peak memory does not grow with the clip's
length; between passes only small per-frame records are kept (a crop box, the motion coefficients, a
timestamp). These functions and `frame_loop.Drive.render` call the backbone (and a contact sheet, for
its source frame's own motion).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from cmet_core import faces
from cmet_core.backbones.base import Backbone, MotionRecord, Source
from cmet_core.backbones.spec import Framing
from cmet_core.edit.editing import Clock, Progress
from cmet_core.edit.expression import expression_track, pulled
from cmet_core.emotion.speech_plan import SpeechPlan
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.audio import load_audio
from cmet_core.media.images import to_tensor
from cmet_core.media.mel import SAMPLE_RATE
from cmet_core.media.overlap import prefetched
from cmet_core.media.video import DecodedFrame, PlanesFrame, VideoInfo, read_frames, read_planes
from cmet_core.meter import metered, step
from cmet_core.networks.connector import Connector
from cmet_core.networks.runtime import SpeechLips
from cmet_core.options import EditChoices, Limits, face_plan
from cmet_core.stages import Stage

T = TypeVar("T")


def chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter)."""
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def read_input(src: Path, limit: int | None = None) -> Iterator[DecodedFrame]:
    """The input's frames; `limit`: only the first ones (a dub shorter than its video needs no more)."""
    frames = read_frames(src)
    return frames if limit is None else itertools.islice(frames, limit)


def read_input_planes(src: Path, limit: int | None = None) -> Iterator[PlanesFrame]:
    """`read_input`, each frame the decoder's planes where they can be kept (crop and paste-back turn only the
    face's rectangle RGB)."""
    frames = read_planes(src)
    return frames if limit is None else itertools.islice(frames, limit)


def identity(backbone: Backbone, crop: np.ndarray) -> Source:
    """The prepared identity source of one face crop."""
    return backbone.prepare_source(to_tensor([crop]))


def motion_of(backbone: Backbone, crops: list[np.ndarray]) -> MotionRecord:
    """The motion of face crops, one row each."""
    return backbone.encode(to_tensor(crops))


def framed(boxes: list[faces.CropBox], framing: Framing) -> list[faces.CropBox]:
    """The part of each tracked crop box the backbone sees and renders: the box, or the fixed window of it
    that PD-FGC cuts (`Framing.window`). Cutting that part straight out of the frame at `framing.size` is
    the original's resize, cut and resize in one resampling; paste-back puts the render back there."""
    return [box.window(framing.size, framing.window) for box in boxes]


def face_pass(
    src: Path,
    info: VideoInfo,
    options: EditChoices,
    limits: Limits,
    crop_input: bool,
    progress: Progress,
    framing: Framing,
    limit: int | None = None,
) -> faces.FacePlan:
    """Pass 1: every frame's box as the backbone frames it (`framed`) and the identity frame, with the user's
    face choice."""
    plan = face_plan(
        src, info, options, limits, crop_input, lambda done, total: progress(Stage.FACES, done, total), limit
    )
    return replace(plan, boxes=framed(plan.boxes, framing))


def encode_pass(
    backbone: Backbone,
    src: Path,
    boxes: list[faces.CropBox],
    source_index: int,
    face_size: int,
    chunk_frames: int,
    progress: Progress,
    clock: Clock,
    limit: int | None = None,
) -> tuple[MotionRecord, np.ndarray, Source]:
    """Pass 2: every frame's motion and time, and the identity frame's prepared source (`encode_faces` of one)."""
    motions, times, sources = encode_faces(
        backbone, src, [boxes], [source_index], face_size, chunk_frames, progress, clock, limit
    )
    return motions[0], times, sources[0]


def encode_faces(
    backbone: Backbone,
    src: Path,
    boxes: Sequence[list[faces.CropBox]],
    source_indices: Sequence[int],
    face_size: int,
    chunk_frames: int,
    progress: Progress,
    clock: Clock,
    limit: int | None = None,
) -> tuple[list[MotionRecord], np.ndarray, list[Source]]:
    """Pass 2 for one face or several (`boxes[k]`: face k's box in every frame): each frame decoded once, every
    face cropped from it, all of a chunk's crops encoded in one forward; per face, every frame's motion and its
    identity frame's prepared source, and the frames' times."""
    frames = len(boxes[0])
    parts: list[list[MotionRecord]] = [[] for _ in boxes]
    times: list[float] = []
    source_crops: list[np.ndarray | None] = [None] * len(boxes)

    def cropped(chunk: list[PlanesFrame]) -> tuple[list[PlanesFrame], list[list[np.ndarray]]]:
        if chunk[-1].index >= frames:
            raise InputError(ErrorCode.DECODE_FAILED, f"{src}: decoding gave more frames than the first pass")
        with step("crop"):
            return chunk, [[faces.crop_frame(f.image, face[f.index], face_size) for f in chunk] for face in boxes]

    # decoding and cropping the next chunk in a thread of their own while the networks encode this one
    decoded = chunks(metered("decode encode", read_input_planes(src, limit)), chunk_frames)
    for chunk, crops in prefetched(map(cropped, decoded), 1):
        for k, face_crops in enumerate(crops):
            if chunk[0].index <= source_indices[k] <= chunk[-1].index:
                source_crops[k] = face_crops[source_indices[k] - chunk[0].index]
        with clock.networks():
            motion = motion_of(backbone, [crop for face_crops in crops for crop in face_crops])
        for k, part in enumerate(motion.split([len(chunk)] * len(boxes))):
            parts[k].append(part)
        times += [f.time_s for f in chunk]
        progress(Stage.ENCODE, len(times), frames)
    if any(crop is None for crop in source_crops) or len(times) != frames:
        raise InputError(ErrorCode.DECODE_FAILED, f"{src}: decoding gave {len(times)} frames, the first pass {frames}")
    with clock.networks():
        sources = [identity(backbone, crop) for crop in source_crops if crop is not None]
    return [MotionRecord.cat(p) for p in parts], np.asarray(times), sources


@dataclass(frozen=True)
class InputMotion:
    """What passes 1 and 2 found in a video: crop boxes, the identity frame, every frame's motion and
    time, the prepared source."""

    boxes: list[faces.CropBox]
    source_index: int
    motion: MotionRecord
    times: np.ndarray
    source: Source


def driving_choices(options: EditChoices) -> EditChoices:
    """The choices a driving clip (a photo's pose video, an eye video) is read with: its face is its most
    prominent one, since the face choice names the edited input's face."""
    return options.model_copy(update={"face_index": None, "face_box": None, "source_frame": None})


def motion_passes(
    backbone: Backbone,
    face_size: int,
    src: Path,
    info: VideoInfo,
    options: EditChoices,
    limits: Limits,
    progress: Progress,
    clock: Clock,
    *,
    limit: int | None = None,
    source_index: int | None = None,
) -> InputMotion:
    """Passes 1 and 2, each timed as its stage; `source_index` overrides the face pass's identity frame."""
    crop_input = faces.is_face_crop(info.width, info.height)
    with clock.stage(Stage.FACES):
        plan = face_pass(src, info, options, limits, crop_input, progress, backbone.framing, limit)
    index = plan.source_index if source_index is None else source_index
    with clock.stage(Stage.ENCODE):
        motion, times, source = encode_pass(
            backbone, src, plan.boxes, index, face_size, limits.chunk_frames, progress, clock, limit
        )
    return InputMotion(plan.boxes, index, motion, times, source)


def audio_lips(lips: SpeechLips, src: Path, info: VideoInfo, times: np.ndarray, limits: Limits) -> torch.Tensor:
    """A video's lip part from its own audio, one row per frame at `times`: what a backbone whose lips always
    come from speech (PD-FGC) renders for an edit that keeps the video's lips. A video without audio
    gets the lips of silence."""
    if info.has_audio:
        try:
            wav = load_audio(src, SAMPLE_RATE, max_seconds=limits.max_duration_s)
        except ValueError as exc:
            raise InputError(ErrorCode.DECODE_FAILED, f"{src}: its audio does not decode: {exc}") from None
    else:
        wav = np.zeros(int(np.ceil(info.duration_s * SAMPLE_RATE)), np.float32)
    windows = torch.from_numpy(lips.windows(wav))
    step = limits.chunk_frames
    codes = torch.cat([lips.forward(windows[a : a + step]) for a in range(0, windows.shape[0], step)])
    return lips.finish(codes, times)


def edited_expression(
    connector: Connector | None,
    device: torch.device,
    plan: SpeechPlan,
    exp_in: torch.Tensor,
    times: np.ndarray,
    progress: Progress,
    clock: Clock,
) -> torch.Tensor:
    """Every output frame's expression coefficients (`exp_in`, at `times`) moved towards the target: by the
    connector toward its semantic vector (one for the clip, or the timeline's at each window's time), and
    directly toward an expression reference's code. `connector` may be None when nothing speaks (only
    references: `speech_plan.needs_connector`)."""
    with clock.stage(Stage.EXPRESSION), clock.networks():
        exp = exp_in
        if plan.speaks:
            assert connector is not None, "a target the connector reads needs a connector (connector_of)"
            with torch.inference_mode():
                exp = expression_track(connector, exp_in.to(device), times, plan.condition(device)).cpu()
        pulls = plan.pulls(np.asarray(times, dtype=np.float64) - float(times[0]))
        if pulls is not None:
            exp = pulled(exp_in.cpu(), exp, *pulls)
        progress(Stage.EXPRESSION, len(times), len(times))
    return exp

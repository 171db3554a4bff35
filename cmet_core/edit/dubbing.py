"""Dubbing: a video or a photo speaks a speech track, with the emotion the edit asks for.

The lips follow the speech through Audio2Lip (mel windows, the network, the original's
smoothing), or through the backbone's own audio encoder where it has one (PD-FGC); head pose,
expression and background come from the pose source (the input video,
or a photo's pose video, or the photo itself, still), one frame per output frame as `lips.plan`
says; the identity is the input's source frame or the photo. The output runs at Audio2Lip's
25 fps for as long as the speech, and its audio is the speech track.

`Dub` runs the edit's face and motion passes (`passes.py`) on the pose source and plugs its lip
track and pose feed into the edit's frame loop (`frame_loop.py`): the loop renders with the lips of
the speech and pastes into the pose feed's frames. Frames of a video background are decoded in the
plan's order by `FrameFeed`: forward runs stream, backward runs (bounce) are decoded block by block
after a seek, so memory stays one block whatever the fill.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from cmet_core import faces
from cmet_core.edit.editing import Clock, EditResult, Parts, Progress, connector_of
from cmet_core.edit.eyes import eye_clip
from cmet_core.edit.frame_loop import Drive, Frame, FrameLoop, video_out
from cmet_core.edit.lips import check_inputs, plan
from cmet_core.edit.passes import (
    InputMotion,
    driving_choices,
    edited_expression,
    framed,
    identity,
    motion_of,
    motion_passes,
    read_input,
)
from cmet_core.emotion.library import EmotionLibrary
from cmet_core.emotion.speech_plan import EditTarget, needs_connector
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media import mel
from cmet_core.media.mel import FPS as LIP_FPS
from cmet_core.media.photo import is_photo, read_photo
from cmet_core.media.speech_track import read_track
from cmet_core.media.video import VideoInfo, read_frames, upright
from cmet_core.networks.runtime import SpeechLips
from cmet_core.options import EditChoices, Limits, probe_input
from cmet_core.stages import Stage

OUTPUT_TIME_BASE = Fraction(1, 12800)


class FrameFeed:
    """The frames of a video in any order a plan asks for, holding at most one block in memory."""

    def __init__(self, path: Path, block: int) -> None:
        self.path, self.block = path, max(1, block)
        self.pts: dict[int, int] = {}  # frame index -> pts, learnt while decoding forwards

    def frames(self, order: Sequence[int]) -> Iterator[np.ndarray]:
        i = 0
        while i < len(order):
            j = i + 1
            if j < len(order) and order[j] < order[i]:
                while j < len(order) and order[j] < order[j - 1]:
                    j += 1
                yield from self._backward(order[i:j])
            else:
                while j < len(order) and order[j] >= order[j - 1]:
                    j += 1
                yield from self._forward(order[i:j])
            i = j

    def _forward(self, run: Sequence[int]) -> Iterator[np.ndarray]:
        wanted = iter(run)
        want = next(wanted)
        for frame in read_frames(self.path):
            if frame.pts is not None:
                self.pts[frame.index] = frame.pts
            while frame.index == want:
                yield frame.image
                want = next(wanted, -1)
            if want == -1:
                return
        raise InputError(ErrorCode.DECODE_FAILED, f"{self.path}: decoding gave fewer frames than the first pass")

    def _backward(self, run: Sequence[int]) -> Iterator[np.ndarray]:
        for a in range(0, len(run), self.block):
            part = run[a : a + self.block]
            images = self._span(min(part), max(part))
            for index in part:
                yield images[index]

    def _span(self, lo: int, hi: int) -> dict[int, np.ndarray]:
        """Frames lo..hi: a seek to the key frame before lo, then decoding to hi (from the start without pts)."""
        got: dict[int, np.ndarray] = {}
        if lo in self.pts and hi in self.pts:
            index_of = {pts: i for i, pts in self.pts.items()}
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                container.seek(self.pts[lo], stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    i = index_of.get(frame.pts) if frame.pts is not None else None
                    if i is not None and lo <= i <= hi:
                        got[i] = upright(frame)
                    if frame.pts is None or frame.pts >= self.pts[hi]:
                        break
        if len(got) < hi - lo + 1:  # no pts, or the seek landed past lo: the slow, sure way
            got = {f.index: f.image for f in read_frames(self.path) if lo <= f.index <= hi}
        if len(got) < hi - lo + 1:
            raise InputError(ErrorCode.DECODE_FAILED, f"{self.path}: frames {lo}-{hi} do not decode again")
        return got


def _input_frames(src: Path, image: np.ndarray | None, limit: int | None) -> Iterable[np.ndarray]:
    """What the per-frame stages prepare from: the photo, or the frames of the video the dub reads."""
    return [image] if image is not None else (f.image for f in read_input(src, limit))


class Dub:
    """One dubbing edit; `run` reads top to bottom as the stages happen."""

    def __init__(
        self,
        editor: Parts,
        src: Path,
        dst: Path,
        target: EditTarget,
        options: EditChoices,
        limits: Limits,
        progress: Progress,
        library: EmotionLibrary | None,
        speech_track: Path | None,
        pose_video: Path | None,
        eye_video: Path | None = None,
    ) -> None:
        self.editor, self.src, self.dst, self.target, self.options = editor, src, dst, target, options
        self.progress, self.library, self.limits = progress, library, limits
        self.clock = Clock()
        self.photo = is_photo(src)
        check_inputs(
            options.lips, photo=self.photo, speech_track=speech_track is not None, pose_video=pose_video is not None
        )
        assert speech_track is not None
        if editor.lips is None:
            raise InputError(
                ErrorCode.LIPS_UNAVAILABLE,
                f"model set {editor.models.path} has no Audio2Lip; `cmet models pull` fetches it",
            )
        self.lips: SpeechLips = editor.lips
        self.speech_track, self.pose_video, self.eye_video = speech_track, pose_video, eye_video

    def run(self) -> EditResult:
        editor, clock, options, limits = self.editor, self.clock, self.options, self.limits
        connector = connector_of(editor) if needs_connector(self.target) else None
        max_pixels = limits.max_pixels_per_second / LIP_FPS
        image = read_photo(self.src, max_pixels) if self.photo else None
        if image is not None:
            options.check_upscale(image.shape[1], image.shape[0])
        info = None if self.photo else probe_input(self.src, options, limits)
        with clock.stage(Stage.MEL):  # the front end: decoding, resampling, then the lip model's windows
            wav = read_track(self.speech_track, limits.max_duration_s)
            windows = torch.from_numpy(self.lips.windows(wav))
        self.lip_frames = mel.num_video_frames(wav.shape[0])
        with clock.stage(Stage.EXPRESSION), clock.networks():  # a timeline or the voice over the speech's length
            speech_plan = editor.plan(self.target, self.library, self.speech_track, self.lip_frames / LIP_FPS, limits)
        limit: int | None = None
        if image is not None:
            crop_input, found = self._photo_pose(image)
        else:
            assert info is not None
            limit = self._frames_needed(info)
            crop_input = faces.is_face_crop(info.width, info.height)
            found = motion_passes(
                editor.backbone, editor.face_size, self.src, info, options, limits, self.progress, clock, limit=limit
            )
        lips = self._lip_track(windows)
        frames = plan(found.times, lips.shape[0], options.pose_fill, photo=image is not None)
        # The connector runs over the output's own frames and clock, so a timeline or the voice of the
        # speech track lands where it is heard, whatever the pose fill repeats.
        poses = torch.tensor([f.pose for f in frames])
        times = np.arange(len(frames)) / LIP_FPS
        exp = edited_expression(
            connector, editor.backbone.device, speech_plan, found.motion.exp[poses], times, self.progress, clock
        )
        clip = eye_clip(editor, self.eye_video, options, limits, self.progress, clock)
        eyes = clip.at(times) if clip is not None else None
        loop = FrameLoop.of(editor, options, found.boxes[0].side, clock, self.progress, eyes)
        loop.prepare(lambda: _input_frames(self.src, image, limit), found.boxes)
        height, width = image.shape[:2] if image is not None else (info.height, info.width)  # type: ignore[union-attr]
        width, height = loop.output_size(width, height)
        like = VideoInfo(
            path=self.dst,
            width=width,
            height=height,
            fps=Fraction(LIP_FPS),
            time_base=OUTPUT_TIME_BASE,
            frame_count=len(frames),
            duration_s=len(frames) / LIP_FPS,
            rotation=0,
            video_codec="h264",
            has_audio=True,
        )
        backgrounds = (
            itertools.repeat(image)
            if image is not None
            else FrameFeed(self.src, limits.chunk_frames).frames([f.background for f in frames])
        )
        feed = (
            Frame(bg, (found.boxes[f.background],), f.background) for f, bg in zip(frames, backgrounds, strict=False)
        )
        drive = Drive(found.source, found.motion, poses, exp, lips[torch.tensor([f.lip for f in frames])])
        out = video_out(self.dst, like, self.speech_track, limits.encoding(editor.backbone.device.type == "cuda"))
        loop.run([drive], feed, out, chunk=limits.chunk_frames, crop_input=crop_input)
        return EditResult(
            output=self.dst,
            frames=len(frames),
            fps=float(LIP_FPS),
            duration_s=len(frames) / LIP_FPS,
            width=width,
            height=height,
            source_frame=found.source_index,
            face_crop_input=crop_input,
            stage_seconds=clock.seconds,
            network_seconds=clock.network,
            connector=editor.connector_label if connector is not None else "",
        )

    def _frames_needed(self, info: VideoInfo) -> int:
        """Input frames covering the speech: a speech shorter than the video leaves the rest undecoded.
        `frame_rate` is never below the true rate, so these frames span at least the speech."""
        needed = math.ceil(self.lip_frames / LIP_FPS * info.frame_rate) + 1
        return min(info.frame_count, max(needed, (self.options.source_frame or 0) + 1))

    def _photo_pose(self, image: np.ndarray) -> tuple[bool, InputMotion]:
        """The photo's face box and identity; the pose motion of the pose video, or of the photo itself."""
        backbone, clock = self.editor.backbone, self.clock
        with clock.stage(Stage.FACES):
            box, crop_input = self._photo_face(image)
        crop = faces.crop_face(image, box, self.editor.face_size)
        with clock.stage(Stage.ENCODE), clock.networks():
            source = identity(backbone, crop)
            if self.pose_video is None:
                return crop_input, InputMotion([box], 0, motion_of(backbone, [crop]), np.zeros(1), source)
        options = driving_choices(self.options)
        info = probe_input(self.pose_video, options, self.limits)
        pose = motion_passes(
            backbone,
            self.editor.face_size,
            self.pose_video,
            info,
            options,
            self.limits,
            self.progress,
            clock,
            limit=self._frames_needed(info),
            source_index=0,
        )
        return crop_input, InputMotion([box], 0, pose.motion, pose.times, source)

    def _photo_face(self, image: np.ndarray) -> tuple[faces.CropBox, bool]:
        """The photo's crop box (the whole photo when it already is EDTalk's crop), found as in a video."""
        h, w = image.shape[:2]
        crop_input = faces.is_face_crop(w, h)
        found = faces.find_faces_in(
            [image],
            (w, h),
            crop_input=crop_input,
            selection=self.options.face_selection(),
            max_missing=0.0,
            source_frame=0,
        )
        return framed(found.boxes, self.editor.backbone.framing)[0], crop_input

    def _lip_track(self, windows: torch.Tensor) -> torch.Tensor:
        """(T, lip width), one row per 25 fps output frame: the speech's windows through the lip model in
        chunks (a batcher mixes them with other jobs'), then its finish over the whole track."""
        parts: list[torch.Tensor] = []
        step = self.limits.chunk_frames
        with self.clock.stage(Stage.LIPS), self.clock.networks():
            for a in range(0, windows.shape[0], step):
                parts.append(self.lips.forward(windows[a : a + step]))
                self.progress(Stage.LIPS, min(a + step, windows.shape[0]), windows.shape[0])
            return self.lips.finish(torch.cat(parts), np.arange(self.lip_frames) / LIP_FPS)

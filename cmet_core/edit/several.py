"""Several faces in one edit, each with its own target (`EditChoices.faces`), in one pass over the frames.

The face pass tracks every selected face (and, for `select: "speaker"`, every other face as a candidate) in
one detection pass with identities kept apart (`faces.find_many_faces`); the active speaker is chosen from the
mouths and the soundtrack (`speaker.py`). One encode pass crops every face of a frame and encodes them in one
forward (`passes.encode_faces`); each face's expression is edited toward its entry's target; the frame loop
renders each face of a chunk and pastes them all into the frame before the write (`FrameLoop.run` with one
`Drive` per face). A face is rendered only where it is there and edited: away from the frame (longer than
`faces.find.LEAVE_S`) or not the speaker now, its pixels are the input's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from cmet_core import faces
from cmet_core.edit.editing import Clock, EditResult, Parts, Progress, connector_of
from cmet_core.edit.frame_loop import Drive, Frame, FrameLoop, video_out
from cmet_core.edit.passes import audio_lips, edited_expression, encode_faces, framed, read_input, read_input_planes
from cmet_core.edit.speaker import speaker_turns
from cmet_core.emotion.library import EmotionLibrary
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.faces.turns import SpeakerTurn, presence
from cmet_core.media.video import DecodedFrame, PlanesFrame
from cmet_core.meter import metered
from cmet_core.options import EditChoices, FaceTarget, Limits, probe_input
from cmet_core.stages import Stage

log = logging.getLogger(__name__)


class SeveralFaces:
    """One edit of several faces of a video with its own lips and audio; `run` reads as the stages happen."""

    def __init__(
        self,
        editor: Parts,
        src: Path,
        dst: Path,
        options: EditChoices,
        limits: Limits,
        progress: Progress,
        library: EmotionLibrary | None,
    ) -> None:
        self.editor, self.src, self.dst, self.options, self.limits = editor, src, dst, options, limits
        self.progress, self.library = progress, library
        self.clock = Clock()

    def run(self) -> EditResult:
        editor, clock, options = self.editor, self.clock, self.options
        backbone = editor.backbone
        connector = connector_of(editor)
        info = probe_input(self.src, options, self.limits)
        fixed = [entry for entry in options.faces if not entry.speaker]
        speaker = next((entry for entry in options.faces if entry.speaker), None)
        with clock.stage(Stage.EXPRESSION), clock.networks():
            plans = [
                editor.plan(_target(e), self.library, self.src, info.duration_s, self.limits, has_audio=info.has_audio)
                for e in (*fixed, *([speaker] if speaker is not None else []))
            ]
        with clock.stage(Stage.FACES):
            tracked = faces.find_many_faces(
                self.src,
                info,
                [selection for e in fixed if (selection := e.face_selection()) is not None],
                candidates=speaker is not None,
                max_candidates=self.limits.max_faces,
                source_frame=options.source_frame,
                progress=lambda done, total: self.progress(Stage.FACES, done, total),
            )
            candidates = tracked[len(fixed) :]
            turns: list[SpeakerTurn] = []
            if candidates:
                turns = speaker_turns(
                    self.src, info, candidates, lambda done, total: self.progress(Stage.FACES, done, total)
                )
        boxes = [framed(face.boxes, backbone.framing) for face in tracked]
        with clock.stage(Stage.ENCODE):
            motions, times, sources = encode_faces(
                backbone,
                self.src,
                boxes,
                [face.source_index for face in tracked],
                editor.face_size,
                self.limits.chunk_frames,
                self.progress,
                clock,
            )
        lip_track = None
        if backbone.speech_lips is not None:  # one soundtrack: every face's lips from the video's own audio
            with clock.stage(Stage.ENCODE), clock.networks():
                lip_track = audio_lips(backbone.speech_lips, self.src, info, times, self.limits)
        clip_times = times - times[0]
        drives, shown = [], []
        for k, face in enumerate(tracked):
            plan = plans[min(k, len(fixed))]
            own = motions[k].exp
            edited = edited_expression(connector, backbone.device, plan, own, times, self.progress, clock)
            weight = presence(turns, face.label, clip_times) if k >= len(fixed) else np.ones(len(times))
            weight = weight * face.present
            exp = own + torch.from_numpy(weight[:, None]).to(own) * (edited - own)
            drives.append(Drive(sources[k], motions[k], torch.arange(len(times)), exp, lip_track))
            shown.append(weight > 0)
        loop = FrameLoop.of(
            editor, options.model_copy(update={"enhance": "off"}), boxes[0][0].side, clock, self.progress
        )
        inputs: Iterator[PlanesFrame | DecodedFrame] = (
            read_input_planes(self.src) if loop.takes_planes else read_input(self.src)
        )
        frames = (
            Frame(
                f.image,
                tuple(boxes[k][f.index] if shown[k][f.index] else None for k in range(len(tracked))),
                f.index,
                f.pts,
            )
            for f in metered("decode render", inputs)
        )
        out = video_out(
            self.dst, info, self.src if info.has_audio else None, self.limits.encoding(backbone.device.type == "cuda")
        )
        loop.run(drives, frames, out, chunk=self.limits.chunk_frames, crop_input=False)
        log.info(
            "edited %d faces in %d frames in %.2f s (network %.2f s)",
            len(tracked),
            len(times),
            sum(clock.seconds.values()),
            clock.network,
            extra={"faces": len(tracked), "frames": len(times), "network_seconds": round(clock.network, 3)},
        )
        return EditResult(
            output=self.dst,
            frames=len(times),
            fps=float(info.fps),
            duration_s=info.duration_s,
            width=info.width,
            height=info.height,
            source_frame=tracked[0].source_index,
            face_crop_input=False,
            stage_seconds=clock.seconds,
            network_seconds=clock.network,
            connector=editor.connector_label,
            faces=[face.label for face in tracked[: len(fixed)]],
            speakers=turns,
        )


def _target(entry: FaceTarget) -> EmotionTarget:
    """A face entry's target as an edit's (`from_audio` there follows the clip's voice, as an edit's does)."""
    return EmotionTarget(emotion=entry.emotion, intensity=entry.intensity)

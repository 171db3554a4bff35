"""Synthetic clips: the embedded default input of `cmet edit`, generated test media, and two talkers
taking turns side by side (`write_turns`, for the several-faces tests and benchmark).

No real face video can ship with the project, so the default input is drawn: a 256x256 face
crop (it passes straight to the model, no detector involved) whose mouth opens and closes in
time with a voice-like tone. It shows the whole pipeline running; it is not a quality demo.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np

SAMPLE_RATE = 16000


def write_clip(
    path: Path,
    draw: Callable[[int], np.ndarray],
    frames: int,
    fps: int = 25,
    audio: Callable[[np.ndarray], np.ndarray] | None = None,
    rotation: int = 0,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode `draw(i)` (H,W,3 uint8 RGB) for each frame, plus `audio(t)` (mono samples at times t) as AAC."""
    first = draw(0)
    h, w = first.shape[:2]
    with av.open(str(path), mode="w") as out:
        video = cast(av.VideoStream, out.add_stream(codec, rate=fps))  # `codec` names a video encoder
        video.width, video.height, video.pix_fmt = w, h, pix_fmt
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if audio is not None else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(first if i == 0 else draw(i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None and audio is not None:
            t = np.arange(int(SAMPLE_RATE * frames / fps)) / SAMPLE_RATE
            chunk = av.AudioFrame.from_ndarray(audio(t).astype(np.float32)[None, :], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = SAMPLE_RATE, 0
            out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


def _mouth_opening(t: np.ndarray) -> np.ndarray:
    """Syllable-like envelope, about four syllables a second."""
    envelope: np.ndarray = np.clip(np.sin(2 * np.pi * 2.1 * t) * np.sin(2 * np.pi * 0.7 * t + 0.5), 0, 1)
    return envelope


def _face(i: int, fps: int, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.empty((size, size, 3), np.uint8)
    image[...] = (70, 90, 120)
    nod = 0.01 * np.sin(2 * np.pi * 0.5 * i / fps)
    head = ((xx - 0.5) / 0.3) ** 2 + ((yy - 0.5 - nod) / 0.4) ** 2 < 1
    image[head] = (224, 180, 150)
    for ex in (0.38, 0.62):
        image[((xx - ex) / 0.05) ** 2 + ((yy - 0.42 - nod) / 0.025) ** 2 < 1] = (40, 30, 30)
    opening = 0.01 + 0.05 * float(_mouth_opening(np.array([i / fps]))[0])
    image[((xx - 0.5) / 0.1) ** 2 + ((yy - 0.68 - nod) / opening) ** 2 < 1] = (120, 40, 50)
    return image


def _voice(t: np.ndarray) -> np.ndarray:
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 6))
    return 0.15 * _mouth_opening(t) * harmonics


def write_sample_clip(path: Path, seconds: float = 2.0, fps: int = 25, size: int = 256) -> Path:
    """The embedded default input: a drawn talking face crop with a voice-like track."""
    return write_clip(Path(path), lambda i: _face(i, fps, size), max(1, round(seconds * fps)), fps, audio=_voice)


TWO_FACE_SIZE = (480, 240)
TWO_FACE_BOXES = ((32, 32, 208, 208), (272, 32, 448, 208))
"""Where `write_turns` puts each talker (x0, y0, x1, y1): the left one, the right one."""
TWO_TALKERS = ("mead_W009_038", "hdtf_RD_Radio1_000_5")
"""The test data's two face clips with audio (`<name>_cropped.mp4` and `<name>.wav`) that take turns."""


def write_turns(path: Path, talkers: list[tuple[Path, Path]], turn_s: float = 2.0, turns: int = 2) -> Path:
    """Two talkers (each a face-crop video and its audio) side by side who take turns: in each turn of `turn_s`
    seconds one plays its clip with its audio while the other holds still (the left one first), so who speaks
    when, and where each face is (`TWO_FACE_BOXES`), are known."""
    import cv2  # deferred: only the tests and the benchmark make such clips

    from cmet_core.media.audio import load_audio
    from cmet_core.media.video import read_frames

    fps, per_turn = 25, int(round(turn_s * 25))
    side = TWO_FACE_BOXES[0][2] - TWO_FACE_BOXES[0][0]
    clips = []
    for video, _ in talkers:
        frames = []
        for frame in read_frames(video):
            frames.append(cv2.resize(frame.image, (side, side), interpolation=cv2.INTER_AREA))
            if len(frames) == per_turn * turns:
                break
        clips.append(frames)
    voices = [load_audio(audio, SAMPLE_RATE) for _, audio in talkers]
    w, h = TWO_FACE_SIZE

    def shown(face: int, i: int) -> int:
        """The clip frame face `face` shows at output frame `i`: its own frames while it speaks, else held."""
        turn, into = divmod(i, per_turn)
        spoken = sum(1 for t in range(turn) if t % 2 == face) * per_turn
        return spoken + into if turn % 2 == face else max(spoken - 1, 0)

    def draw(i: int) -> np.ndarray:
        img = np.full((h, w, 3), 96, np.uint8)
        for face, (x0, y0, x1, y1) in enumerate(TWO_FACE_BOXES):
            img[y0:y1, x0:x1] = clips[face][shown(face, i)]
        return img

    def audio(t: np.ndarray) -> np.ndarray:
        frame = np.minimum((t * fps).astype(int), per_turn * turns - 1)
        face = (frame // per_turn) % 2
        samples = np.zeros_like(t)
        for k in (0, 1):
            at = face == k
            heard = (np.array([shown(k, int(i)) for i in frame[at]]) + (t[at] * fps - frame[at])) / fps
            index = (heard * SAMPLE_RATE).astype(int)
            voice = voices[k]
            samples[at] = np.where(index < len(voice), voice[np.minimum(index, len(voice) - 1)], 0.0)
        return samples

    return write_clip(path, draw, per_turn * turns, fps, audio)

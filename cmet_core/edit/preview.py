"""Contact sheets: one frame of a clip under each emotion x intensity, as a labelled PNG grid and single images.

A sheet answers "what would this edit look like?" in seconds, before a long render. The face is found,
followed and cropped by the edit pipeline's own face pass (`faces.find_faces`), so a cell shows the crop,
identity and paste-back the full edit will use. The identity source is prepared once and the chosen frame
encoded once; each cell then costs one connector run and one render of that frame, through the edit's
own frame loop (`frame_loop.py`), so its per-frame stages (the restorer, where the options ask for it)
work on the cells as on the edit's frames.

A still frame has no neighbours, while in a clip every connector window sees the previous window's
deltas. So the frame is repeated for `SETTLE_S` seconds (a few connector windows) and the cell takes the
last frame's expression: what the frame looks like in the middle of an edited clip, not in its first
window. Intensity 0 keeps the frame's own expression (delta zero): the unedited frame as EDTalk renders it.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from cmet_core import faces
from cmet_core.edit.editing import Clock, Progress, check_eyes, connector_of, no_progress
from cmet_core.edit.frame_loop import Drive, Frame, FrameLoop, Images
from cmet_core.edit.passes import audio_lips, face_pass, identity, motion_of
from cmet_core.emotion.library import EmotionLibrary
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.video import DecodedFrame, read_frames
from cmet_core.options import EditChoices, Limits, SheetChoice, probe_input
from cmet_core.stages import Stage

if TYPE_CHECKING:
    from PIL import Image

    from cmet_core.edit.pipeline import Editor

SETTLE_S = 1.0
"""How long the still frame is repeated for the connector: five of its 5-frame windows at 25 fps."""
MODEL_FPS = 25.0

CELL = 256
"""Side of a grid cell in pixels: the face's crop, as EDTalk renders it at full size."""
LABEL_W = 176
HEADER_H = 36
FONT_SIZE = 18
BACKGROUND = (24, 24, 24)
INK = (235, 235, 235)


@dataclass
class SheetCell:
    emotion: str
    intensity: float
    image: np.ndarray
    """The whole edited frame, (H, W, 3) uint8 RGB, as the edit would write it."""


@dataclass
class ContactSheet:
    frame: int
    source_frame: int
    emotions: tuple[str, ...]
    intensities: tuple[float, ...]
    rows: list[list[SheetCell]]
    """rows[i][j]: emotion i at intensity j."""
    box: faces.CropBox
    stage_seconds: dict[Stage, float] = field(default_factory=dict)

    @property
    def cells(self) -> list[SheetCell]:
        return [cell for row in self.rows for cell in row]

    @property
    def total_seconds(self) -> float:
        return sum(self.stage_seconds.values())

    def grid(self) -> Image.Image:
        """The labelled grid: a header row of intensities, a label column of emotions, the face of each cell."""

        cols, rows = len(self.intensities), len(self.emotions)
        sheet = Image.new("RGB", (LABEL_W + cols * CELL, HEADER_H + rows * CELL), BACKGROUND)
        draw = ImageDraw.Draw(sheet)
        _label(draw, f"frame {self.frame}", (0, 0, LABEL_W, HEADER_H))
        for j, intensity in enumerate(self.intensities):
            _label(draw, f"intensity {intensity:g}", (LABEL_W + j * CELL, 0, LABEL_W + (j + 1) * CELL, HEADER_H))
        for i, row in enumerate(self.rows):
            top = HEADER_H + i * CELL
            _label(draw, self.emotions[i], (0, top, LABEL_W, top + CELL))
            for j, cell in enumerate(row):
                face = faces.crop_face(cell.image, self.box, CELL)
                sheet.paste(Image.fromarray(face), (LABEL_W + j * CELL, top))
        return sheet

    def save(self, path: Path) -> Path:
        """The grid as PNG; its text chunks name the rows, columns and frame, for scripts."""

        info = PngInfo()
        info.add_text("cmet:emotions", json.dumps(list(self.emotions)))
        info.add_text("cmet:intensities", json.dumps(list(self.intensities)))
        info.add_text("cmet:frame", str(self.frame))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.grid().save(path, format="PNG", pnginfo=info)
        return path

    def save_cells(self, folder: Path) -> list[Path]:
        """Each cell's whole edited frame as its own PNG, named `cell_name(row, column)`, in row order."""

        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, row in enumerate(self.rows):
            for j, cell in enumerate(row):
                paths.append(folder / cell_name(i, j, cell.emotion, cell.intensity))
                Image.fromarray(cell.image).save(paths[-1], format="PNG")
        return paths


def cell_name(row: int, column: int, emotion: str, intensity: float) -> str:
    """A file name safe on every system, unique by position, readable by emotion and intensity."""
    slug = re.sub(r"[^a-z0-9]+", "-", emotion.lower()).strip("-")[:40] or "emotion"
    return f"{row:02d}-{column:02d}-{slug}-{intensity:g}.png"


def _label(draw: object, text: str, box: tuple[int, int, int, int]) -> None:
    """`text` centred in `box`, shortened with an ellipsis where it would not fit."""

    assert isinstance(draw, ImageDraw.ImageDraw)
    font = ImageFont.load_default(size=FONT_SIZE)
    x0, y0, x1, y1 = box
    room = x1 - x0 - 12
    shown = text
    while draw.textlength(shown, font=font) > room and len(shown) > 1:
        shown = shown[:-2] + "…"
    draw.text(((x0 + x1) / 2, (y0 + y1) / 2), shown, fill=INK, font=font, anchor="mm")


def contact_sheet(
    editor: Editor,
    src: Path | str,
    choice: SheetChoice,
    options: EditChoices = EditChoices(),
    library: EmotionLibrary | None = None,
    progress: Progress | None = None,
    limits: Limits = Limits(),
) -> ContactSheet:
    """`choice.frame` of `src` under every emotion x intensity; the face chosen and cropped as `options`
    say, the input under the operator's `limits`."""
    return Sheet(editor, Path(src), choice, options, limits, library, progress or no_progress).run()


class Sheet:
    """One contact sheet: the face pass, one frame encoded, then the cells through the edit's frame loop."""

    def __init__(
        self,
        editor: Editor,
        src: Path,
        choice: SheetChoice,
        options: EditChoices,
        limits: Limits,
        library: EmotionLibrary | None,
        progress: Progress,
    ) -> None:
        self.editor, self.src, self.choice, self.options, self.limits = editor, src, choice, options, limits
        self.library, self.progress = library, progress
        self.clock = Clock()

    def run(self) -> ContactSheet:
        choice, editor, clock = self.choice, self.editor, self.clock
        connector_of(editor)  # a set without a connector is refused before any decoding
        check_eyes(editor.backbone, self.options)
        self.options.check_eye_video(False)  # a sheet's cells are stills: no driving clip to follow
        info = probe_input(self.src, self.options, self.limits)
        with clock.stage(Stage.EXPRESSION):  # unknown emotions and bad blends are refused before any decoding
            vectors = {
                (e, i): editor.vector(EmotionTarget(emotion=e, intensity=i), self.library)
                for e in choice.emotions
                for i in choice.intensities
            }
        crop_input = faces.is_face_crop(info.width, info.height)
        with clock.stage(Stage.FACES):
            plan = face_pass(
                self.src, info, self.options, self.limits, crop_input, self.progress, editor.backbone.framing
            )
        index = plan.source_index if choice.frame is None else choice.frame
        if not 0 <= index < len(plan.boxes):
            raise InputError(
                ErrorCode.BAD_PREVIEW_FRAME, f"frame {index} is outside the clip (frames 0-{len(plan.boxes) - 1})"
            )
        size = editor.face_size
        with clock.stage(Stage.ENCODE):
            decoded = _decode(self.src, {index, plan.source_index})
            images = {i: f.image for i, f in decoded.items()}
            source = identity(
                editor.backbone, faces.crop_face(images[plan.source_index], plan.boxes[plan.source_index], size)
            )
            if index == plan.source_index:  # the default: the source's own encoding gives the frame's motion
                motion = editor.backbone.source_motion(source)
            else:
                motion = motion_of(editor.backbone, [faces.crop_face(images[index], plan.boxes[index], size)])
            self.progress(Stage.ENCODE, 1, 1)
        edited = [key for key in vectors if key[1] > 0]
        with clock.stage(Stage.EXPRESSION):
            exps = self.settled(motion.exp, [vectors[key] for key in edited])
        own = 1 if any(i == 0 for i in choice.intensities) else 0  # a first row of the frame's own expression
        rows = torch.cat([motion.exp, exps]) if own else exps
        frame, box = images[index], plan.boxes[index]
        loop = FrameLoop.of(editor, self.options, plan.boxes[0].side, clock, self.progress)
        loop.prepare(lambda: [frame], [box])
        n = rows.shape[0]
        cells = Images()
        lips = editor.backbone.speech_lips
        mouth = None  # a backbone whose lips come from speech: the frame's own, from the audio at its time
        if lips is not None:
            time_s = np.array([decoded[index].time_s])
            mouth = audio_lips(lips, self.src, info, time_s, self.limits).expand(n, -1)
        drive = Drive(source, motion, torch.zeros(n, dtype=torch.long), rows, mouth, smoothed=True)  # stills
        loop.run([drive], itertools.repeat(Frame(frame, (box,), 0), n), cells.open(), chunk=n, crop_input=crop_input)
        pasted = cells.images
        at = {key: pasted[own + k] for k, key in enumerate(edited)}
        grid = [
            [SheetCell(e, i, at[(e, i)] if i > 0 else pasted[0]) for i in choice.intensities] for e in choice.emotions
        ]
        width, height = loop.output_size(info.width, info.height)
        return ContactSheet(
            frame=index,
            source_frame=plan.source_index,
            emotions=choice.emotions,
            intensities=choice.intensities,
            rows=grid,
            box=_scaled(box, width / info.width),
            stage_seconds=clock.seconds,
        )

    def settled(self, exp: torch.Tensor, vectors: list[np.ndarray]) -> torch.Tensor:
        """Each vector's edited expression of the frame after `SETTLE_S` of itself (see the module's
        docstring): the connector's autoregressive loop over a constant track, every cell in one batch."""
        if not vectors:
            return exp[:0]
        connector, device = connector_of(self.editor), self.editor.backbone.device
        t, n = connector.cfg.window, len(vectors)
        window = exp.to(device).reshape(1, 1, -1).expand(n, t, -1).contiguous()
        speech = torch.from_numpy(np.stack(vectors)).to(device).reshape(n, 1, -1)
        ref = torch.zeros_like(window)
        with torch.inference_mode():
            for _ in range(max(1, round(SETTLE_S * MODEL_FPS / t))):
                ref = connector(ref, speech, window).reshape(n, t, -1)
        return (exp.to(device) + ref[:, -1]).cpu()


def _scaled(box: faces.CropBox, scale: float) -> faces.CropBox:
    """`box` (pixel edges) in a frame resized `scale` times by an upscaling stage."""
    return box if scale == 1 else faces.CropBox(box.cx * scale, box.cy * scale, box.side * scale)


def _decode(src: Path, wanted: set[int]) -> dict[int, DecodedFrame]:
    """The frames `wanted`, decoding no further than the last of them."""
    found: dict[int, DecodedFrame] = {}
    for frame in read_frames(src):
        if frame.index in wanted:
            found[frame.index] = frame
            if len(found) == len(wanted):
                break
    if len(found) != len(wanted):
        raise InputError(ErrorCode.DECODE_FAILED, f"{src}: decoding gave fewer frames than the face pass")
    return found

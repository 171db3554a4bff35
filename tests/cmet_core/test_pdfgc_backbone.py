"""PD-FGC as a backbone: the protocol on its tiny networks, the gains and the clip-level smoothing, its crop
window in face tracking and paste-back, lips from its own audio encoder, and a tiny PD-FGC set that edits,
dubs and follows a timeline through the same code as EDTalk (the CLI, and the worker's editor)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cmet_cli.main import app
from cmet_core.backbones.base import MotionRecord
from cmet_core.backbones.pdfgc.backbone import PDFGCBackbone
from cmet_core.backbones.pdfgc.codes import smooth_mouth, smooth_pose
from cmet_core.backbones.pdfgc.entry import FRAMING
from cmet_core.backbones.pdfgc.network import PDFGC, TINY_PDFGC
from cmet_core.edit.eyes import EyeClip
from cmet_core.edit.frame_loop import Drive
from cmet_core.edit.passes import audio_lips
from cmet_core.edit.preview import contact_sheet
from cmet_core.faces import CropBox, paste_mask
from cmet_core.media.sample import write_clip
from cmet_core.media.video import probe, read_frames
from cmet_core.networks.runtime import RuntimeOptions
from cmet_core.options import Limits, SheetChoice
from cmet_jobs.settings import JobsSettings
from cmet_jobs.spec import EditSpec, InputRef, run_options
from tests.media_factory import make_audio, make_video
from worker.editor import WorkerEditor

runner = CliRunner()


@pytest.fixture(scope="module")
def backbone() -> PDFGCBackbone:
    torch.manual_seed(0)
    return PDFGCBackbone(PDFGC(TINY_PDFGC), RuntimeOptions(device="cpu", batch=2))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four frames at a face crop's size (the whole frame is the crop), with a tone for the lips."""
    return make_video(tmp_path_factory.mktemp("pdfgc") / "in.mp4", frames=4, size=(256, 256))


def test_the_backbone_encodes_raw_codes_and_renders_with_the_gains(backbone: PDFGCBackbone) -> None:
    crops = torch.rand(2, 3, 224, 224) * 2 - 1
    motion = backbone.encode(crops)
    assert motion.exp.shape == (2, 30) and {k: v.shape[1] for k, v in motion.parts.items()} == {
        "mouth": 500,
        "eye": 6,
        "pose": 6,
    }
    assert torch.equal(motion.parts["mouth"], backbone.silence.expand(2, -1))  # no speech read off frames
    sources = [backbone.prepare_source(crops[i : i + 1]) for i in range(2)]
    torch.testing.assert_close(backbone.source_motion(sources[1]).exp, motion.exp[1:])
    # two identities in one render (a batcher mixing jobs); C-MET's delta joins the raw emotion code, then
    # PD-FGC's x1.2 (kit SPEC section 8)
    delta = 0.5 * torch.randn(2, 30)
    mixed = backbone.render(backbone.stack_sources(sources, [1, 1]), motion.with_exp(motion.exp + delta))
    assert mixed.shape == (2, 3, 224, 224)
    p = motion.parts
    for i, src in enumerate(sources):
        codes = [1.5 * p["mouth"], 1.2 * (motion.exp + delta), 1.2 * p["eye"], p["pose"]]
        style = torch.cat([src.id_feat, *(c[i : i + 1] for c in codes)], dim=1)
        with torch.inference_mode():
            direct = backbone.net.net_generator(style, src.id_map)
        torch.testing.assert_close(mixed[i : i + 1], direct, atol=1e-4, rtol=0)  # batch 2 vs 1


def test_smoothing_runs_once_over_the_output_order(backbone: PDFGCBackbone) -> None:
    """A dub's rows repeat and reverse the pose source: mouth and pose are smoothed over the output frames
    as a whole, so the render's chunks join; a contact sheet's stills are never smoothed."""
    torch.manual_seed(1)
    motion = MotionRecord(
        torch.randn(3, 30), {"mouth": torch.randn(3, 500), "eye": torch.randn(3, 6), "pose": torch.randn(3, 6)}
    )
    rows, exp, lips = torch.tensor([0, 1, 2, 1, 0]), torch.randn(5, 30), torch.randn(5, 500)
    drive = Drive(None, motion, rows, exp, lips).over_clip(backbone)
    out = drive.motion
    torch.testing.assert_close(out.parts["mouth"], smooth_mouth(lips))
    torch.testing.assert_close(out.parts["pose"], smooth_pose(motion.parts["pose"][rows]))
    assert torch.equal(out.exp, exp) and torch.equal(out.parts["eye"], motion.parts["eye"][rows])
    still = Drive(None, motion, rows, exp, smoothed=True)
    assert still.over_clip(backbone) is still


def test_gaze_and_blink_switch_off_their_parts_of_the_eye_code(backbone: PDFGCBackbone) -> None:
    eye = torch.arange(1.0, 7.0).expand(2, -1)
    motion = MotionRecord(torch.zeros(2, 30), {"mouth": torch.zeros(2, 500), "eye": eye, "pose": torch.zeros(2, 6)})
    assert backbone.switch_off(motion, frozenset({"gaze"})).parts["eye"][0].tolist() == [1, 2, 0, 0, 5, 6]
    assert backbone.switch_off(motion, frozenset({"blink"})).parts["eye"][0].tolist() == [0, 0, 3, 4, 0, 0]
    assert backbone.switch_off(motion, frozenset()).parts["eye"].equal(eye)


def test_the_crop_window_is_a_box_of_the_frame_and_its_paste_fades_at_its_edges() -> None:
    box = CropBox(cx=300.0, cy=200.0, side=448.0)  # 2 frame pixels per crop pixel
    window = box.window(FRAMING.size, FRAMING.window)
    assert (window.x0, window.y0, window.side) == (box.x0 + 32, box.y0, 384.0)
    assert box.window(256, None) is box
    mask = paste_mask(224, crop_input=True, windowed=True)
    edges = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    assert edges.max() == 0.0 and mask[112, 112] == 1.0 and mask[186, 112] == 1.0  # the mouth is inside


def test_lips_come_from_the_videos_own_audio(backbone: PDFGCBackbone, clip: Path, tmp_path: Path) -> None:
    info = probe(clip)
    times = np.array([f.time_s for f in read_frames(clip)])
    lips = backbone.speech_lips
    assert lips is not None
    spoken = audio_lips(lips, clip, info, times, Limits())
    assert spoken.shape == (4, 500) and (spoken - backbone.silence).abs().max() > 1e-4
    mute = make_video(tmp_path / "mute.mp4", frames=4, size=(256, 256), audio=False)
    silent = audio_lips(lips, mute, probe(mute), times, Limits())
    torch.testing.assert_close(silent, backbone.silence.expand(4, -1))


def _edit(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["edit", *args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def edited(tiny_pdfgc_set: Path, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The clip edited to happy through the CLI, and what the CLI said."""
    out = tmp_path_factory.mktemp("edited") / "edited.mp4"
    code, said = _edit(str(clip), "-e", "happy", "-o", str(out), "--models", str(tiny_pdfgc_set))
    assert code == 0, said
    return out, said


def test_a_pdfgc_set_edits_and_dubs_through_the_cli(
    tiny_pdfgc_set: Path, clip: Path, edited: tuple[Path, str], tmp_path: Path
) -> None:
    out, said = edited
    assert "4 frames" in said and probe(out).frame_count == 4
    before, after = ([f.image.astype(np.int16) for f in read_frames(p)] for p in (clip, out))
    # the window covers rows 0..219 of this 256 px crop: below it the input stays; the face inside is rendered
    assert all(np.abs(a[236:] - b[236:]).mean() < 3 for a, b in zip(after, before, strict=True))
    assert all(np.abs(a[60:180, 60:200] - b[60:180, 60:200]).mean() > 10 for a, b in zip(after, before, strict=True))
    speech = make_audio(tmp_path / "line.wav", seconds=0.3)
    dub = tmp_path / "dub.mp4"
    code, said = _edit(
        str(clip), "-e", "sad", "--lips-from", str(speech), "-o", str(dub), "--models", str(tiny_pdfgc_set)
    )
    assert code == 0, said
    assert probe(dub).frame_count == 7  # 25 fps for as long as the speech


def test_a_set_without_a_connector_is_refused_naming_cmet_train(
    bare_pdfgc_set: Path, clip: Path, tmp_path: Path
) -> None:
    code, said = _edit(str(clip), "-e", "happy", "-o", str(tmp_path / "o.mp4"), "--models", str(bare_pdfgc_set))
    assert code == 2 and "[connector_missing]" in said and "cmet-train" in said, said
    assert not (tmp_path / "o.mp4").exists()


def test_the_workers_editor_follows_a_timeline_and_makes_a_sheet_on_a_pdfgc_set(
    tiny_pdfgc_set: Path, clip: Path, tmp_path: Path
) -> None:
    """The editor a worker builds (its batcher around the backbone) and the options a stored job runs with."""
    settings = JobsSettings(models_set=tiny_pdfgc_set, device="cpu")
    editor = WorkerEditor().get(settings)
    assert editor.backbone.name == "pdfgc" and editor.lips is not None
    assert editor.expression_weights(clip).shape == (4, 30)  # what cmet-train prep-visual reads
    segments = [{"start_s": 0.0, "end_s": 0.08, "target": "angry"}, {"start_s": 0.08, "end_s": 0.16, "target": "happy"}]
    spec = EditSpec.model_validate(
        {"video": {"key": "jobs/x/input/video"}, "timeline": {"segments": segments, "transition_s": 0.04}}
    )
    choices, limits = run_options(spec, settings)
    result = editor.edit(clip, tmp_path / "timeline.mp4", spec.edit_target((), _no_fetch), choices, limits=limits)
    assert result.frames == 4 and result.timeline is not None and len(result.timeline.segments) == 2
    assert probe(tmp_path / "timeline.mp4").frame_count == 4
    sheet = contact_sheet(editor, clip, SheetChoice(emotions=("sad",), intensities=(0.0, 1.0), frame=2), choices)
    (own, sad) = sheet.rows[0]
    assert own.image.shape == sad.image.shape == (256, 256, 3) and sheet.frame == 2
    assert np.array_equal(own.image[236:], sad.image[236:]) and not np.array_equal(own.image, sad.image)
    still = choices.model_copy(update={"gaze": "off", "blink": "off"})
    (still_own,) = contact_sheet(editor, clip, SheetChoice(emotions=("sad",), intensities=(0.0,), frame=2), still).rows[
        0
    ]
    assert not np.array_equal(still_own.image, own.image)  # the same frame without its eye motion


def test_eye_controls_on_an_edtalk_set_are_refused_naming_pdfgc(tiny_set: Path, clip: Path, tmp_path: Path) -> None:
    code, said = _edit(
        str(clip), "-e", "happy", "--blink", "off", "-o", str(tmp_path / "o.mp4"), "--models", str(tiny_set)
    )
    assert code == 2 and "[eye_control_unsupported]" in said and "pdfgc" in said and "edtalk" in said, said
    code, said = _edit(
        str(clip), "-e", "happy", "--gaze", "clip", "--eyes-from", str(clip), "-o", str(tmp_path / "o.mp4"),
        "--models", str(tiny_set),
    )  # fmt: skip
    assert code == 2 and "[eye_control_unsupported]" in said and "gaze clip" in said and "pdfgc" in said, said


def test_a_driving_clip_gives_the_gaze_or_blink_parts_at_each_output_time(backbone: PDFGCBackbone) -> None:
    eye = torch.arange(1.0, 7.0).expand(3, 6)
    motion = MotionRecord(torch.zeros(3, 30), {"eye": eye, "pose": torch.zeros(3, 6)})
    driving = MotionRecord(torch.zeros(3, 30), {"eye": -eye, "pose": torch.zeros(3, 6)})
    assert backbone.take_eyes(motion, driving, frozenset({"gaze"})).parts["eye"][0].tolist() == [1, 2, -3, -4, 5, 6]
    assert backbone.take_eyes(motion, driving, frozenset({"blink"})).parts["eye"][0].tolist() == [-1, -2, 3, 4, -5, -6]
    rows = MotionRecord(torch.zeros(2, 30), {"eye": torch.tensor([[0.0] * 6, [1.0] * 6])})
    clip = EyeClip(rows, np.array([0.0, 0.08]), 0.16, frozenset({"blink"}))  # 2 frames at 12.5 fps
    at = clip.at(np.arange(6) / 25)  # the output's 25 fps: each clip frame twice, then around again
    assert at.motion.parts["eye"][:, 0].tolist() == [0, 0, 1, 1, 0, 0] and at.parts == {"blink"}


def test_gaze_and_blink_follow_a_driving_clip_through_the_cli(
    tiny_pdfgc_set: Path, clip: Path, edited: tuple[Path, str], tmp_path: Path
) -> None:
    """The driving clip shows the input's first two frames, then noise: the output's first two frames are the
    plain edit's (give or take the driving clip's own encoding), the last two take the eyes of the noise."""
    own = [f.image for f in read_frames(clip)]
    noise = np.random.default_rng(0).integers(0, 256, (4, 256, 256, 3), dtype=np.uint8)
    driving = write_clip(tmp_path / "eyes.mp4", lambda i: own[i] if i < 2 else noise[i], 4, 25)
    out = tmp_path / "eyes-out.mp4"
    code, said = _edit(
        str(clip), "-e", "happy", "--gaze", "clip", "--blink", "clip", "--eyes-from", str(driving), "-o", str(out),
        "--models", str(tiny_pdfgc_set),
    )  # fmt: skip
    assert code == 0, said
    plain, driven = ([f.image.astype(np.int16) for f in read_frames(p)] for p in (edited[0], out))
    diffs = [float(np.abs(a - b).mean()) for a, b in zip(plain, driven, strict=True)]
    # the tiny networks barely move the picture with the eye code: hundredths of a grey level, yet ten times more
    assert max(diffs[:2]) < 0.01 and min(diffs[2:]) > 5 * max(diffs[:2]), diffs
    code, said = _edit(
        str(clip), "-e", "happy", "--blink", "clip", "-o", str(tmp_path / "o.mp4"), "--models", str(tiny_pdfgc_set)
    )
    assert code == 2 and "[eye_video_missing]" in said and not (tmp_path / "o.mp4").exists(), said


def _no_fetch(_ref: InputRef, _name: str) -> Path:
    raise AssertionError("a timeline of library emotions fetches nothing")

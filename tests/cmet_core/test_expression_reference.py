"""Expression from a reference photo or clip (decision 0040) on both backbones: every rendered frame's expression
code moves toward the reference's mean code by the intensity, with no connector (a connector-less PD-FGC set
edits from a reference and refuses a named emotion); a timeline segment may aim at a reference; a reference
without a face is refused with `no_face`, in the CLI with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cmet_cli.main import app
from cmet_core.backbones.base import Backbone, MotionRecord, Source
from cmet_core.edit.expression import pulled
from cmet_core.edit.pipeline import Editor
from cmet_core.edit.reference import reference_expression
from cmet_core.emotion.speech_plan import needs_connector
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.emotion.timeline import ClipTimeline, Expression, ReferenceFile, Segment, TimelineSchedule
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.sample import write_sample_clip
from cmet_core.media.video import probe
from cmet_core.modelsets.sets import load_set
from cmet_core.networks.runtime import RuntimeOptions
from cmet_core.options import EditChoices, Limits
from cmet_jobs import connectors
from cmet_jobs.errors import RequestError
from cmet_jobs.settings import JobsSettings
from cmet_jobs.spec import EditSpec, InputRef
from tests.media_factory import make_video

runner = CliRunner()
QUICK = EditChoices(quality=False)


class Recording:
    """The set's own backbone, noting the expression rows it encodes (per call) and renders (the edit's only
    output in the backbone's space: a tiny random generator's image, encoded again, would say nothing)."""

    def __init__(self, inner: Backbone) -> None:
        self.inner = inner
        self.encoded: list[torch.Tensor] = []
        self.rendered: list[torch.Tensor] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode(self, crops: torch.Tensor) -> MotionRecord:
        motion = self.inner.encode(crops)
        self.encoded.append(motion.exp.detach().cpu().clone())
        return motion

    def render(self, source: Source, motion: MotionRecord) -> torch.Tensor:
        self.rendered.append(motion.exp.detach().cpu().clone())
        return self.inner.render(source, motion)

    def take(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each encode call's rows, and every rendered row in order; then forgets them."""
        encoded, rendered = self.encoded, torch.cat(self.rendered)
        self.encoded, self.rendered = [], []
        return encoded, rendered


def _editor(models: Path) -> tuple[Editor, Recording]:
    runtime = RuntimeOptions(device="cpu", batch=4)
    model_set = load_set(models)
    spy = Recording(model_set.build_backbone(runtime))
    return Editor(model_set, runtime, backbone=spy), spy  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 4-frame face-crop clip to edit, a 5-frame clip of the drawn face as a reference, and references
    without any face (a gradient clip, a black photo)."""
    folder = tmp_path_factory.mktemp("reference")
    Image.new("RGB", (256, 256)).save(folder / "black.png")
    return {
        "clip": make_video(folder / "in.mp4", frames=4, size=(256, 256)),
        "face": write_sample_clip(folder / "face.mp4", seconds=0.2),
        "faceless": make_video(folder / "faceless.mp4", frames=3, size=(128, 96)),
        "black": folder / "black.png",
    }


def _distances(rows: torch.Tensor, code: np.ndarray) -> np.ndarray:
    return np.linalg.norm(rows.double().numpy() - code[None, :], axis=1)


def test_a_connectorless_pdfgc_set_moves_every_frame_toward_a_reference_clip(
    bare_pdfgc_set: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    """Stored as the API stores it and fetched as the worker fetches it: each rendered frame's emotion code lies
    halfway (intensity 0.5) from its own code to the reference's mean code, with no connector in the set."""
    editor, spy = _editor(bare_pdfgc_set)
    assert editor.connector is None
    spec = EditSpec(video=InputRef(key="jobs/x/input/video"), expression_reference=InputRef(key="r"), intensity=0.5)
    fetched: list[str] = []

    def fetch(_ref: InputRef, name: str, kind: str) -> Path:
        fetched.append(f"{name}:{kind}")
        return inputs["face"]

    target = spec.edit_target((), fetch)
    assert fetched == ["expression_reference:video"]
    result = editor.edit(inputs["clip"], tmp_path / "out.mp4", target, QUICK)
    assert result.frames == 4 and result.connector == "" and probe(tmp_path / "out.mp4").frame_count == 4
    # the plan reads the reference (its 5 frames, one chunk) before the edit encodes its own 4 frames
    (seen, own), rendered = spy.take()
    assert seen.shape == (5, 30) and own.shape == (4, 30)
    reference = seen.double().mean(dim=0).numpy()
    before, after = _distances(own, reference), _distances(rendered, reference)
    assert before.min() > 1e-3 and np.allclose(after, 0.5 * before, rtol=1e-3), (before, after)
    with pytest.raises(InputError) as refused:  # a named emotion needs the connector the set lacks
        editor.edit(inputs["clip"], tmp_path / "happy.mp4", EmotionTarget(emotion="happy"), QUICK)
    assert refused.value.code == ErrorCode.CONNECTOR_MISSING and "expression reference" in str(refused.value)


def test_an_edtalk_timeline_segment_takes_a_reference_photo_and_frames_outside_keep_theirs(
    tiny_set: Path, inputs: dict[str, Path], test_data: Path, tmp_path: Path
) -> None:
    editor, spy = _editor(tiny_set)
    photo = test_data / "faces" / "ang_crop.png"
    segment = {"start_s": 0, "end_s": 0.08, "target": {"expression_reference": str(photo)}}
    timeline = ClipTimeline.model_validate({"transition_s": 0, "segments": [segment]})
    assert not timeline.speaks()
    result = editor.edit(inputs["clip"], tmp_path / "out.mp4", timeline, QUICK)
    assert result.frames == 4 and result.connector == ""  # only references: the connector never ran
    (seen, own), rendered = spy.take()
    assert seen.shape == (1, 10) and own.shape == (4, 10)
    reference = seen[0].double().numpy()
    on_it = torch.from_numpy(reference).double().expand(2, -1)
    torch.testing.assert_close(rendered[:2].double(), on_it, atol=1e-4, rtol=0)
    torch.testing.assert_close(rendered[2:], own[2:], atol=1e-5, rtol=0)


def test_references_without_a_face_are_refused_with_no_face(tiny_set: Path, inputs: dict[str, Path]) -> None:
    editor, _ = _editor(tiny_set)
    for reference in (inputs["faceless"], inputs["black"]):
        with pytest.raises(InputError) as refused:
            reference_expression(editor.backbone, reference, Limits())
        assert refused.value.code == ErrorCode.NO_FACE and reference.name in str(refused.value)


def _edit(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["edit", *args])
    return result.exit_code, result.output


def test_the_cli_edits_toward_a_reference_photo_and_refuses_a_faceless_one(
    tiny_set: Path, inputs: dict[str, Path], test_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    photo = test_data / "faces" / "ang_crop.png"
    flags = ("--expression-from", str(photo), "--intensity", "0.7", "--models", str(tiny_set), "--no-quality")
    code, said = _edit(str(inputs["clip"]), *flags)
    assert code == 0, said
    assert probe(tmp_path / "in.like-ang_crop-x0.7.mp4").frame_count == 4  # named after the reference
    code, said = _edit(
        str(inputs["clip"]), "--expression-from", str(inputs["black"]), "-o", "x.mp4", "--models", str(tiny_set)
    )
    assert code == 2 and "[no_face]" in said and "black.png" in said, said
    code, said = _edit(str(inputs["clip"]), "-e", "happy", "--expression-from", str(photo), "--models", str(tiny_set))
    assert code == 2 and "exactly one of" in said, said


def test_the_api_refuses_a_target_needing_the_missing_connector_at_submission(
    bare_pdfgc_set: Path, tiny_set: Path
) -> None:
    """What the API checks before a job exists (the set's manifest, no torch): 422 `connector_missing` for a
    named emotion, speech or a timeline with one; a reference, or a served registry version, passes."""
    settings = JobsSettings(models_set=bare_pdfgc_set)
    with pytest.raises(RequestError) as refused:
        connectors.check(settings, needs=True)
    assert refused.value.code == ErrorCode.CONNECTOR_MISSING and refused.value.code.status == 422
    assert "cmet-train" in str(refused.value) and str(bare_pdfgc_set.parent) not in str(refused.value)
    connectors.check(settings, needs=False)
    connectors.check(settings.model_copy(update={"connector_version": "latest"}), needs=True)
    connectors.check(JobsSettings(models_set=tiny_set), needs=True)


def test_a_reference_segment_cross_fades_with_a_speech_segment_beside_it() -> None:
    """The connector's share (presence) and the reference's pull come from the same edges: across a shared
    boundary one fades out as the other fades in, and outside every segment neither acts."""
    speech = Segment[Any](start_s=0.0, end_s=1.0, target="happy")
    reference = Segment[Any](start_s=1.0, end_s=2.0, target="x", intensity=0.5)
    code = np.arange(10.0)
    schedule = TimelineSchedule([(speech, np.ones(1024)), (reference, Expression(code))], transition_s=0.4)
    t = np.array([0.5, 0.9, 1.0, 1.1, 1.5, 2.5])
    weights, codes = schedule.pulls(t) or (None, None)
    assert weights is not None and codes is not None and np.array_equal(codes, code[None, :])
    presence, pull = schedule.presence(t), weights[:, 0] / 0.5
    assert np.allclose(presence + pull, [1, 1, 1, 1, 1, 0]) and pull[2] == pytest.approx(0.5)
    assert presence[0] == 1 and pull[4] == 1 and presence[4] == 0
    assert schedule.speaks and not TimelineSchedule([(reference, Expression(code))], 0.4).speaks
    moved = pulled(torch.zeros(1, 10), torch.zeros(1, 10), np.array([[0.5]]), code[None, :])
    assert torch.allclose(moved, torch.from_numpy(0.5 * code).float()[None, :])


def test_a_cli_plan_names_its_reference_beside_the_plan(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    segments = [{"start_s": 0, "end_s": 1, "target": {"expression_reference": "smile.png"}, "intensity": 0.6}]
    plan.write_text(json.dumps({"segments": segments}))
    (segment,) = ClipTimeline.load(plan).segments
    assert segment.target == ReferenceFile(expression_reference=tmp_path / "smile.png")
    assert needs_connector(EmotionTarget(emotion="happy")) and not needs_connector(ClipTimeline.load(plan))

"""Every edit choice survives every door: a request (JSON and multipart) -> `EditSpec` -> the stored
JSON -> the options the worker runs the pipeline with; and a `cmet edit` flag -> the same options.

The values are made from `EditChoices`' own fields (each set to a value other than its default), so
a new option is covered without a line here, and the test fails when it cannot make such a value.
The app runs in-process on SQLite, local storage and a filesystem broker; no worker takes the jobs:
the stored spec goes through the worker's own `jobs.spec_of` and `run_options`.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from typer.testing import CliRunner

from cmet_cli import edit_cmd
from cmet_cli.choice_flags import flag_name
from cmet_cli.main import app as cli
from cmet_core.edit.pipeline import Editor
from cmet_core.options import EditChoices, FaceChoice, FaceTarget
from cmet_jobs import jobs
from cmet_jobs.db.models import JobRow
from cmet_jobs.db.session import session_scope
from cmet_jobs.keys import create_key
from cmet_jobs.settings import JobsSettings
from cmet_jobs.spec import run_options
from service.app import create_app
from tests.media_factory import make_video

NUMBERS = (0.25, 0.5, 1.5, 2.0, 0.0, 1.0, 3.0)
"""Numbers tried in turn for a numeric field: the first that is valid and not the default is taken."""


def candidates(annotation: Any) -> list[Any]:
    """Values of `annotation`'s type to try, in order (empty: no idea how to make one)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return candidates(args[0])
    if origin in (typing.Union, types.UnionType):
        return [value for arg in args if arg is not type(None) for value in candidates(arg)]
    if origin is Literal:
        return list(args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return [(value,) for value in candidates(args[0])]
        firsts = [candidates(arg) for arg in args]
        return [tuple(values[0] + i for i, values in enumerate(firsts))] if all(firsts) else []
    if annotation is bool:
        return [True, False]
    if annotation is int:
        return [int(n) for n in NUMBERS if n == int(n)]
    if annotation is float:
        return list(NUMBERS)
    if annotation is str:
        return ["x"]
    if annotation is FaceTarget:
        return [FaceTarget(select=0, emotion="happy")]
    return []


def accepted_together(sample: dict[str, Any]) -> bool:
    """Choices the model allows but `cmet_jobs.submissions` refuses together: a clip
    preview of a dub (`bad_preview_window`)."""
    return not (sample.get("preview_s") is not None and sample.get("lips") == "speech")


def non_default_samples(model: type[BaseModel]) -> list[dict[str, Any]]:
    """Valid sets of values that together give every field of `model` a value other than its default.
    Fields that cannot go together (`face_index` and `face_box`; a clip window and dubbed lips) land in different
    sets."""
    fields: dict[str, FieldInfo] = dict(model.model_fields)
    pending = list(fields)
    samples: list[dict[str, Any]] = []
    while pending:
        sample: dict[str, Any] = {}
        grew = True
        while grew:  # again until nothing joins: one field may need another first
            grew = False
            for name in list(pending):
                default = fields[name].get_default(call_default_factory=True)
                for value in candidates(fields[name].annotation):
                    if value == default:
                        continue
                    try:
                        model.model_validate({**sample, name: value})
                    except ValidationError:
                        continue
                    if not accepted_together({**sample, name: value}):
                        continue
                    sample[name] = value
                    pending.remove(name)
                    grew = True
                    break
        if not sample:
            raise AssertionError(f"no valid non-default value for {pending}: teach `candidates` its type")
        samples.append(sample)
    return samples


SAMPLES = non_default_samples(EditChoices)


def test_every_field_gets_a_non_default_value() -> None:
    assert set().union(*SAMPLES) == set(EditChoices.model_fields)
    for sample in SAMPLES:
        made = EditChoices(**sample)
        for name, value in sample.items():
            assert getattr(made, name) == value != EditChoices.model_fields[name].get_default()


# -- the API, the stored spec and the worker ----------------------------------------------------


@dataclass
class Api:
    client: TestClient
    settings: JobsSettings
    files: dict[str, bytes]

    def asset(self, kind: str, content: bytes) -> str:
        made = self.client.post("/v1/uploads", json={"kind": kind, "filename": f"{kind}.bin"})
        assert made.status_code == 201, made.text
        upload = made.json()
        put = self.client.put(upload["upload_url"], content=content, headers=upload["headers"])
        assert put.status_code == 200, put.text
        return str(upload["id"])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("choices")
    # every sample is a job of one key: the per-key preview cap (fairness) is not what this test is about
    settings = JobsSettings(
        data_dir=tmp / "data", broker_url="filesystem://", public_url="http://testserver", previews_per_key=1000
    )
    app = create_app(settings)
    with session_scope(settings.db_url) as session:
        secret = create_key(session, "choices", max_concurrent_jobs=100, max_submissions_per_minute=1000).secret
    soundfile.write(str(tmp / "line.wav"), np.random.default_rng(0).uniform(-0.3, 0.3, 16000), 16000)
    files = {
        # a face crop (upscale 2 is for those), long enough for the preview windows the samples open
        "video": make_video(tmp / "crop.mp4", frames=25, size=(256, 256)).read_bytes(),
        "speech_track": (tmp / "line.wav").read_bytes(),
    }
    with TestClient(app, headers={"Authorization": f"Bearer {secret}"}) as client:
        yield Api(client, settings, files)


def needed_inputs(choices: EditChoices) -> list[str]:
    """The inputs besides the video that these choices need to be accepted: a dub needs a speech track."""
    return ["speech_track"] if choices.lips == "speech" else []


def form_text(value: Any) -> str:
    """A value as a multipart form field carries it (a box as `x0,y0,x1,y1`, faces as JSON)."""
    if isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
        return json.dumps([v.model_dump(mode="json") for v in value])
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def target(sample: dict[str, Any]) -> dict[str, str]:
    """The edit's top-level target: none where `faces` gives each face its own."""
    return {} if sample.get("faces") else {"emotion": "happy"}


def submit(api: Api, sample: dict[str, Any], form: str) -> str:
    inputs = ["video", *needed_inputs(EditChoices(**sample))]
    if form == "json":
        assets = {
            f"{name}_asset": api.asset("video" if name == "video" else "speech", api.files[name]) for name in inputs
        }
        body = {name: value for name, value in EditChoices(**sample).model_dump(mode="json").items() if name in sample}
        response = api.client.post("/v1/edits", json={**body, **assets, **target(sample)})
    else:
        fields = {name: form_text(value) for name, value in sample.items()}
        parts = {name: (name, api.files[name], "application/octet-stream") for name in inputs}
        response = api.client.post("/v1/edits", data={**fields, **target(sample)}, files=parts)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize("form", ["json", "multipart"])
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: "+".join(s))
def test_choices_survive_the_api_the_stored_spec_and_the_worker(api: Api, sample: dict[str, Any], form: str) -> None:
    job_id = submit(api, sample, form)
    with session_scope(api.settings.db_url) as session:
        row = session.get(JobRow, job_id)
        assert row is not None
        stored = row.spec  # the JSON the record keeps, read back from the database
        assert {name: stored[name] for name in sample} == EditChoices(**sample).model_dump(
            mode="json", include=set(sample)
        )
        choices, limits = run_options(jobs.spec_of(row), api.settings)  # what the worker runs the pipeline with
    assert choices == EditChoices(**sample)
    assert limits == api.settings.limits()


FACE_SAMPLES = non_default_samples(FaceChoice)


@pytest.mark.parametrize("form", ["json", "multipart"])
@pytest.mark.parametrize("sample", FACE_SAMPLES, ids=lambda s: "+".join(s))
def test_a_contact_sheets_choices_survive_too(api: Api, sample: dict[str, Any], form: str) -> None:
    """A contact sheet takes `FaceChoice`'s part of the choices, through its own request and spec."""
    if form == "json":
        body = {**sample, "video_asset": api.asset("video", api.files["video"]), "emotions": ["happy"]}
        response = api.client.post("/v1/previews", json=body)
    else:
        fields = {**{name: form_text(value) for name, value in sample.items()}, "emotions": "happy"}
        response = api.client.post("/v1/previews", data=fields, files={"video": ("video", api.files["video"])})
    assert response.status_code == 202, response.text
    with session_scope(api.settings.db_url) as session:
        row = session.get(JobRow, response.json()["id"])
        assert row is not None
        choices, _ = run_options(jobs.spec_of(row), api.settings)
    assert choices == EditChoices(**sample)


# -- the CLI --------------------------------------------------------------------------------------

DERIVED: dict[str, dict[Any, list[str]]] = {
    "lips": {"speech": ["--lips-from", "{speech_track}"]},
    "faces": {(FaceTarget(select=0, emotion="happy"),): ["--face", "0:happy"]},
}
"""How a field that another flag sets (`edit_cmd.SET_BY`) gets each non-default value on the command line."""


def cli_args(sample: dict[str, Any], speech_track: Path) -> list[str]:
    args: list[str] = []
    for name, value in sample.items():
        if name in edit_cmd.SET_BY:
            args += [a.format(speech_track=speech_track) for a in DERIVED[name][value]]
        elif isinstance(value, bool):
            args.append(flag_name(name) if value else "--no-" + flag_name(name)[2:])
        else:
            args += [flag_name(name), form_text(value)]
    return args


def test_every_field_another_flag_sets_is_known_here() -> None:
    assert set(edit_cmd.SET_BY) == set(DERIVED)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: "+".join(s))
def test_choices_survive_the_cli(
    sample: dict[str, Any], tiny_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cmet edit` with a flag per field hands the pipeline the same choices (caught at `Editor.edit`:
    together they need not make an edit that runs)."""
    seen: list[EditChoices] = []
    real = Editor.edit

    def caught(*args: Any, **kwargs: Any) -> Any:
        seen.append(inspect.signature(real).bind(*args, **kwargs).arguments["options"])
        raise RuntimeError("stopped before the edit")

    monkeypatch.setattr(Editor, "edit", caught)
    speech_track = tmp_path / "line.wav"
    soundfile.write(str(speech_track), np.zeros(1600), 16000)
    src = make_video(tmp_path / "crop.mp4", frames=25, size=(256, 256))
    emotion = [] if sample.get("faces") else ["--emotion", "happy"]
    args = ["edit", str(src), *emotion, "--models", str(tiny_set), *cli_args(sample, speech_track)]
    result = CliRunner().invoke(cli, args)
    assert "stopped before the edit" in result.output, result.output
    assert seen == [EditChoices(**sample)]

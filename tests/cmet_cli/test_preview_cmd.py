"""`cmet preview` and `cmet edit --preview-s` as a user runs them: files written, exit codes, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from cmet_cli.main import app
from cmet_cli.preview_cmd import split_rows
from cmet_core.edit.preview import CELL, HEADER_H, LABEL_W
from cmet_core.media.sample import write_sample_clip
from cmet_core.media.video import probe

runner = CliRunner()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_clip(tmp_path_factory.mktemp("cli") / "in.mp4", seconds=1.0)


def test_rows_split_on_commas_or_semicolons_between_blends() -> None:
    assert split_rows("happy,sad, sarcastic") == ["happy", "sad", "sarcastic"]
    assert split_rows("happy=0.6,surprised=0.4; sad") == ["happy=0.6,surprised=0.4", "sad"]


def test_preview_writes_the_sheet_and_its_cells(tiny_set: Path, clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    args = ["preview", str(clip), "--emotions", "happy,sad,sarcastic", "--intensities", "0.5,1,1.5", "-o", str(out)]
    result = runner.invoke(app, [*args, "--models", str(tiny_set)])
    assert result.exit_code == 0, result.output
    assert "3 x 3 cells" in result.output and "per cell" in result.output
    with Image.open(out) as png:
        assert png.size == (LABEL_W + 3 * CELL, HEADER_H + 3 * CELL)
        assert json.loads(png.text["cmet:emotions"]) == ["happy", "sad", "sarcastic"]
    cells = sorted((tmp_path / "sheet_cells").glob("*.png"))
    assert len(cells) == 9 and cells[0].name == "00-00-happy-0.5.png"


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (["--emotions", "happy", "--frame", "99"], "[bad_preview_frame]"),
        (["--emotions", "nope"], "[unknown_emotion]"),
        (["--emotions", "happy", "--intensities", "1,x"], "--intensities"),
        (["--emotions", "happy,happy"], "repeat"),
    ],
)
def test_preview_refusals_exit_2(tiny_set: Path, clip: Path, tmp_path: Path, extra: list[str], code: str) -> None:
    result = runner.invoke(
        app, ["preview", str(clip), *extra, "-o", str(tmp_path / "s.png"), "--models", str(tiny_set)]
    )
    assert result.exit_code == 2, result.output
    assert code in result.output and "Traceback" not in result.output


def test_edit_preview_window(tiny_set: Path, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "p.mp4"
    args = ["edit", str(clip), "--emotion", "happy", "--preview-s", "0.4", "--preview-start-s", "0.2", "-o", str(out)]
    result = runner.invoke(app, [*args, "--models", str(tiny_set)])
    assert result.exit_code == 0, result.output
    info = probe(out)
    assert info.frame_count == 10 and info.has_audio
    bad = runner.invoke(
        app, [*args[:-4], "--preview-start-s", "5", "-o", str(tmp_path / "bad.mp4"), "--models", str(tiny_set)]
    )
    assert bad.exit_code == 2 and "[bad_preview_window]" in bad.output
    named = runner.invoke(app, [*args[:-2], "--models", str(tiny_set)])
    assert named.exit_code == 0, named.output
    assert probe(tmp_path / "in.happy.preview.mp4").frame_count == 10

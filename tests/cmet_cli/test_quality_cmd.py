"""`cmet quality` on a pair of fixture clips, and `cmet eval` over three fixture clips: the list's finished
outputs read for one side, a tiny model set's edits for the other (`--compare`), the table complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cmet_cli.main import app
from cmet_core.media.sample import write_clip
from cmet_core.media.video import read_frames

runner = CliRunner()
NAMES = ("mead_W009_038_cropped", "hdtf_RD_Radio1_000_5_cropped", "edtalk_mouth_source_cropped")


@pytest.fixture(scope="module")
def clips(test_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten frames of three fixture speakers, in one folder."""
    folder = tmp_path_factory.mktemp("eval")
    for name in NAMES:
        images = [f.image for f in read_frames(test_data / "video" / f"{name}.mp4", range(10))]
        write_clip(folder / f"{name}.mp4", lambda i, images=images: images[i], len(images))
    return folder


def test_quality_of_a_pair_as_a_table_and_as_json(clips: Path) -> None:
    clip = str(clips / f"{NAMES[0]}.mp4")
    shown = runner.invoke(app, ["quality", clip, clip, "--emotion", "happy"])
    assert shown.exit_code == 0, shown.output
    for measure in ("identity", "lips", "steadiness", "emotion", "faces"):
        assert measure in shown.output
    as_json = runner.invoke(app, ["quality", clip, clip, "--json", "-"])
    report = json.loads(as_json.output)
    assert report["identity"]["verdict"] == "good" and report["lips"]["correlation"] == pytest.approx(1.0)
    missing = runner.invoke(app, ["quality", clip, str(clips / "absent.mp4")])
    assert missing.exit_code == 2 and "[not_found]" in missing.output


def test_eval_prints_and_writes_two_sides(clips: Path, tiny_set: Path, tmp_path: Path) -> None:
    rows = ["input,target,expected,output"] + [f"{n}.mp4,happy,happy,{n}.mp4" for n in NAMES]
    listing = clips / "list.csv"
    listing.write_text("\n".join(rows) + "\n")
    md, js = tmp_path / "table.md", tmp_path / "table.json"
    args = ["eval", str(listing), "--compare", str(tiny_set), "--out-dir", str(tmp_path / "out")]
    result = runner.invoke(app, [*args, "--markdown", str(md), "--json", str(js)])
    assert result.exit_code == 0, result.output
    assert "FER-2013" in md.read_text() and "| seconds per video (AITV) | - |" in md.read_text()
    sides = json.loads(js.read_text())
    assert [s["videos"] for s in sides] == [3, 3]
    read, edited = sides
    assert read["identity"] == pytest.approx(0.0) and read["lips"] == pytest.approx(1.0)
    assert read["seconds_per_video"] is None and edited["seconds_per_video"] > 0
    assert [r["input"] for r in edited["rows"]] == [f"{n}.mp4" for n in NAMES]
    assert all(r["seconds"] > 0 and r["expected"] == "happy" for r in edited["rows"])

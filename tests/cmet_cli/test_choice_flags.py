"""The flags made from a choices model: one per field, with its default and help, and an error where a
field cannot have one (so a new option never goes without its flag)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
import typer
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from cmet_cli import edit_cmd
from cmet_cli.choice_flags import ChoiceFlags, choice_flags, flag_name
from cmet_cli.main import app
from cmet_core.options import EditChoices, FaceChoice


def _options(command: str) -> set[str]:
    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {name for param in click_command.params for name in param.opts}


@pytest.mark.parametrize(
    ("command", "model", "set_by"), [("edit", EditChoices, edit_cmd.SET_BY), ("preview", FaceChoice, {})]
)
def test_every_field_has_its_flag(command: str, model: type[BaseModel], set_by: dict[str, str]) -> None:
    flags = {flag_name(name) for name in model.model_fields if name not in set_by}
    assert flags <= _options(command)
    assert all(flag_name(name) not in _options(command) for name in set_by)


class _Mouth(BaseModel):
    mouth_lock: bool = Field(default=False, description="Keep the input's mouth region unchanged.")
    mode: Literal["soft", "hard"] = Field(default="soft", description="How.")
    strength: float | None = Field(default=None, description="How much.")


def test_a_model_becomes_flags_with_defaults_help_and_validation() -> None:
    got: list[_Mouth] = []
    names: list[str] = []

    @choice_flags(_Mouth)
    def command(name: str = typer.Option("x", "--name"), *, flags: ChoiceFlags) -> None:
        names.append(name)
        got.append(flags.build(_Mouth))

    one = typer.Typer()
    one.command()(command)
    result = CliRunner().invoke(one, ["--mouth-lock", "--mode", "hard", "--strength", "0.5", "--name", "y"])
    assert result.exit_code == 0, result.output
    assert got == [_Mouth(mouth_lock=True, mode="hard", strength=0.5)] and names == ["y"]
    assert CliRunner().invoke(one, []).exit_code == 0 and got[-1] == _Mouth()
    help_text = " ".join(CliRunner().invoke(one, ["--help"]).output.replace("│", " ").split())
    assert "Keep the input's mouth region unchanged." in help_text and "--no-mouth-lock" in help_text
    refused = CliRunner().invoke(one, ["--mode", "sideways"])
    assert refused.exit_code == 2 and "mode" in refused.output


class _NoHelp(BaseModel):
    level: int = 1


class _NoFlagType(BaseModel):
    where: Path = Field(default=Path("."), description="Somewhere.")


class _Lips(BaseModel):
    lips: Literal["video", "speech"] = Field(default="video", description="Whose lips.")


def _plain(*, flags: ChoiceFlags) -> None:  # noqa: ARG001 (never run: making it fails)
    return None


@pytest.mark.parametrize(
    ("model", "set_by", "says"),
    [
        (_NoHelp, {}, "no description"),
        (_NoFlagType, {}, "no CLI flag type"),
        (_Lips, {"lips": "lips_from"}, "no parameter"),
    ],
)
def test_a_field_without_a_flag_is_an_error_when_the_command_is_made(
    model: type[BaseModel], set_by: dict[str, str], says: str
) -> None:
    with pytest.raises(TypeError, match=says):
        choice_flags(model, set_by)(_plain)

"""CLI flags made from a choices model's fields, so `cmet edit` cannot fall behind `EditChoices`.

Each field becomes `--field-name` with the field's default and its `Field(description=...)` as help.
The flag passes the value as typed to the model, which validates it (the same rules and messages as
the API); a field whose type has no plain CLI form needs a parser, and a field another flag sets
(`lips`, set by `--lips-from`) is named with that flag. A field with neither is an error when the
command is defined, so a new option without a flag fails every CLI test.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from cmet_cli.console import EXIT_BAD_INPUT, fail

M = TypeVar("M", bound=BaseModel)
Command = Callable[..., None]
Parser = Callable[[str | None], Any]
"""A flag's text (None: not given) to the field's value."""

PLAIN = (bool, int, float, str)


def validated(model: Callable[..., M], **values: Any) -> M:
    """`model(**values)`, its validation errors turned into the CLI's one-line message and exit 2."""
    try:
        return model(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors())
        raise fail(problems, EXIT_BAD_INPUT) from None


def face_box(text: str | None) -> tuple[float, float, float, float] | None:
    """`--face-box x0,y0,x1,y1`."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        if len(parts) != 4:
            raise ValueError
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError:
        raise fail(f"--face-box must be four numbers x0,y0,x1,y1, got {text!r}", EXIT_BAD_INPUT) from None
    return x0, y0, x1, y1


PARSERS: Mapping[str, Parser] = {"face_box": face_box}
"""Fields whose flag is text the model cannot take as it is."""


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


@dataclass(frozen=True)
class ChoiceFlags:
    """The values of a command's generated flags, parsed but not yet validated."""

    values: Mapping[str, Any]

    def build(self, model: Callable[..., M], **derived: Any) -> M:
        """`model` from these flags and the fields other flags set (`derived`), or exit 2 with the problems."""
        return validated(model, **self.values, **derived)


def cli_type(annotation: Any) -> type | None:
    """The plain type a flag parses for a field annotation (a Literal passes its text to the model, which
    says what it accepts), or None where there is none."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return cli_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        kinds = {cli_type(a) for a in typing.get_args(annotation) if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    if origin is Literal:
        kinds = {type(a) for a in typing.get_args(annotation)}
        return kinds.pop() if len(kinds) == 1 and kinds <= set(PLAIN) else None
    return annotation if annotation in PLAIN else None


def description(field: FieldInfo) -> str | None:
    """The field's description, or its type's (`FaceIndex | None` keeps it inside the union)."""
    if field.description:
        return field.description
    pending = [field.annotation]
    while pending:
        annotation = pending.pop(0)
        for part in typing.get_args(annotation):
            if isinstance(part, FieldInfo) and part.description:
                return part.description
            pending.append(part)
    return None


def _option(name: str, field: FieldInfo) -> inspect.Parameter:
    if name in PARSERS:
        kind: type = str
        default = None
    else:
        found = cli_type(field.annotation)
        if found is None:
            raise TypeError(f"field {name!r} ({field.annotation}) has no CLI flag type: add a parser to PARSERS")
        kind, default = found, field.get_default(call_default_factory=True)
    help_text = description(field)
    if help_text is None:
        raise TypeError(f"field {name!r} has no description to be its flag's help: give it Field(description=...)")
    flag = flag_name(name)
    declared = f"{flag}/--no-{flag[2:]}" if kind is bool else flag  # either way round, whatever the default
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(default, declared, help=help_text),
        annotation=kind | None if default is None else kind,
    )


def choice_flags(model: type[BaseModel], set_by: Mapping[str, str] | None = None) -> Callable[[Command], Command]:
    """Give a command one flag per field of `model` and hand it their values as `flags: ChoiceFlags`.
    `set_by` names the fields another of the command's flags sets (field -> that flag's parameter)."""
    set_by = dict(set_by or {})

    def wrap(command: Command) -> Command:
        hints = typing.get_type_hints(command)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(command).parameters.values()
            if p.name != "flags"
        ]
        for field, flag in set_by.items():
            if field not in model.model_fields or flag not in {p.name for p in own}:
                raise TypeError(f"{command.__name__}: {field!r} is set by {flag!r}, which is no parameter")
        generated = [_option(name, field) for name, field in model.model_fields.items() if name not in set_by]
        names = [p.name for p in generated]

        @functools.wraps(command)
        def run(**kwargs: Any) -> None:
            given = {name: kwargs.pop(name) for name in names}
            parsed = {name: PARSERS[name](v) if name in PARSERS else v for name, v in given.items()}
            command(**kwargs, flags=ChoiceFlags(parsed))

        parameters = [*own, *generated]
        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        del run.__wrapped__  # typer reads this signature, not the command's
        return run

    return wrap

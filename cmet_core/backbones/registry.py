"""Backbone name -> `BackboneSpec`. A model set's `models.json` names its backbone; sets without the
field were written before there was a choice and are EDTalk's."""

from __future__ import annotations

from typing import Final

from cmet_core.backbones.edtalk.entry import EDTALK
from cmet_core.backbones.pdfgc.entry import PDFGC_SPEC
from cmet_core.backbones.spec import BackboneSpec
from cmet_core.networks.errors import ModelLoadError

DEFAULT_BACKBONE: Final = "edtalk"

_BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in (EDTALK, PDFGC_SPEC)}
"""Every backbone a set can name: a new backbone's `entry` is imported above and listed here."""


def register(spec: BackboneSpec) -> None:
    """Make a backbone available to model sets by its name (a second one registers here at import)."""
    _BACKBONES[spec.name] = spec


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return _BACKBONES[name]
    except KeyError:
        known = ", ".join(sorted(_BACKBONES))
        raise ModelLoadError(f"unknown backbone {name!r} (known: {known})") from None


def backbone_names() -> list[str]:
    return sorted(_BACKBONES)

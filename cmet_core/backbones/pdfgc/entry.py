"""PD-FGC's registration: its widths, its framing, its loader and its tools.

Importing this does not import torch (model sets are read by the service); the loaders import the
networks when called.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmet_core.backbones.spec import BackboneSpec, BackboneTools, Framing, Widths

if TYPE_CHECKING:
    import torch

    from cmet_core.backbones.base import Backbone
    from cmet_core.networks.runtime import RuntimeOptions

NAME = "pdfgc"
"""The backbone's name: its registration's, and the kind of its four networks' member in a set."""

MOUTH_PART = "mouth"
"""The motion part the audio encoder writes (PD-FGC's lips always come from audio)."""

LICENCE = (
    "code CC-BY-4.0; the weights (the PD-FGC authors' Google Drive download) carry no stated licence "
    "and were trained on VoxCeleb2 (research use): review before commercial use"
)
"""What the PD-FGC release says of its checkpoints, shown by `cmet models list` (kit README, Licences)."""

FRAMING = Framing(size=224, window=(0, 16, 192, 208))
"""A 224 px crop of which the networks see rows 0..191 and columns 16..207, resized back to 224 px
(kit SPEC_pdfgc.md section 3, trap T1)."""


def pdfgc_widths(config: Mapping[str, Any]) -> Widths:
    """The widths of PD-FGC's networks with this config (`PDFGCConfig.to_dict()`)."""
    motion = config["motion"]
    return Widths(exp=int(motion["emo_dim"]), lip=int(config["audio"]["mouth_dim"]), lip_part=MOUTH_PART)


def _load(path: Path, verify: bool) -> torch.nn.Module:
    from cmet_core.modelsets.checkpoints import load_module  # deferred: torch (sets are read without it)

    return load_module(path, NAME, verify=verify)


def _tools() -> BackboneTools:
    from cmet_core.backbones.pdfgc.tools import TOOLS  # deferred: torch (sets are read without it)

    return TOOLS


def _build(module: torch.nn.Module, runtime: RuntimeOptions) -> Backbone:
    # deferred: torch (sets are read without it)
    from cmet_core.backbones.pdfgc.backbone import PDFGCBackbone
    from cmet_core.backbones.pdfgc.network import PDFGC

    if not isinstance(module, PDFGC):
        raise TypeError(f"the pdfgc backbone needs PD-FGC's four networks, got {type(module).__name__}")
    return PDFGCBackbone(module, runtime)


PDFGC_SPEC = BackboneSpec(
    name=NAME,
    widths=pdfgc_widths,
    load=_load,
    build=_build,
    tools=_tools,
    own_lips=True,
    controls=frozenset({"gaze", "blink"}),
    exp_features="PD_FGC_emo",
)

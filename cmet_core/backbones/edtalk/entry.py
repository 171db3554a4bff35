"""EDTalk's registration: its widths read from a member config, its loader, its builder and its tools.

Importing this does not import torch (model sets are read by the service); the loaders import the
network when called.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmet_core.backbones.spec import BackboneSpec, BackboneTools, Widths

if TYPE_CHECKING:
    import torch

    from cmet_core.backbones.base import Backbone
    from cmet_core.networks.runtime import RuntimeOptions

NAME = "edtalk"
"""The backbone's name: its registration's, and the kind of its generator in a set."""


LIP_PART = "lip"
"""The motion part a lip model (Audio2Lip) replaces."""


def edtalk_widths(config: Mapping[str, Any]) -> Widths:
    """The widths of an EDTalk generator with this config (`EDTalkConfig.to_dict()`)."""
    return Widths(exp=int(config["exp_dim"]), lip=int(config["lip_dim"]), lip_part=LIP_PART)


def _load(path: Path, verify: bool) -> torch.nn.Module:
    from cmet_core.backbones.edtalk.tools import load_edtalk  # deferred: torch (sets are read without it)

    return load_edtalk(path, verify=verify)


def _tools() -> BackboneTools:
    from cmet_core.backbones.edtalk.tools import TOOLS  # deferred: torch (sets are read without it)

    return TOOLS


def _build(module: torch.nn.Module, runtime: RuntimeOptions) -> Backbone:
    # deferred: torch (sets are read without it)
    from cmet_core.backbones.edtalk.backbone import EDTalkBackbone
    from cmet_core.backbones.edtalk.network import Generator

    if not isinstance(module, Generator):
        raise TypeError(f"the edtalk backbone needs an EDTalk Generator, got {type(module).__name__}")
    return EDTalkBackbone(module, runtime)


EDTALK = BackboneSpec(name=NAME, widths=edtalk_widths, load=_load, build=_build, tools=_tools, exp_features="ED_exp")

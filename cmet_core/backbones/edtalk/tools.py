"""EDTalk's set-making tools (`BackboneTools`): its generator from a member config, the kit's fill rule,
the tiny and published configs, the converter of the published `EDTalk.pt` and its conformance groups.

`entry` hands them out on demand: this module imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cmet_core.backbones.edtalk.conformance import kit_checks
from cmet_core.backbones.edtalk.entry import NAME
from cmet_core.backbones.edtalk.network import TINY_EDTALK, EDTalkConfig, Generator
from cmet_core.backbones.spec import BackboneTools
from cmet_core.modelsets.checkpoints import load_module
from cmet_core.modelsets.convert import convert_member
from cmet_core.modelsets.manifests import Source
from cmet_core.verify.fill import Fill, fan_in_scale


def edtalk_rule(key: str, shape: torch.Size) -> Fill:
    """Table `edtalk` of the kit's RULE.md (first match wins; the blur kernels are kept)."""
    last = key.rsplit(".", 1)[-1]
    if last == "kernel":
        return None
    if key.endswith(".modulation.bias"):
        return 1.0, 0.1
    if last == "bias":
        return 0.0, 0.05
    if ".fineadainresblock." in key:
        return 0.0, fan_in_scale(shape)
    if key.startswith("dec.to_flows.") and key.endswith(".conv.weight"):
        return 0.0, 0.1
    if key.startswith("dec.to_rgb") and key.endswith(".conv.0.weight"):
        return 0.0, 0.15
    return 0.0, 1.0


def load_edtalk(path: Path, *, verify: bool = True) -> Generator:
    """An EDTalk generator from `edtalk.safetensors` (or its manifest), in eval mode."""
    module = load_module(path, NAME, verify=verify)
    assert isinstance(module, Generator)
    return module


def convert_edtalk(
    src: Path,
    dest_dir: Path,
    *,
    config: EDTalkConfig = EDTalkConfig(),
    name: str = NAME,
    version: str = "1.0.0",
    source: Source | None = None,
) -> Path:
    """`EDTalk.pt` (`{"gen": state_dict, ...}`) -> `edtalk.safetensors` + manifest; returns the manifest."""
    return convert_member(src, dest_dir, NAME, "gen", "EDTalk generator", config.to_dict(), name, version, source)


def _network(config: Mapping[str, Any]) -> Generator:
    return Generator(EDTalkConfig(**config))


def _convert(src: Path, dest_dir: Path, version: str) -> Path:
    return convert_edtalk(src, dest_dir, version=version)


TOOLS = BackboneTools(
    network=_network,
    fill_rule=edtalk_rule,
    tiny=TINY_EDTALK.to_dict(),
    full=EDTalkConfig().to_dict(),
    convert=_convert,
    conformance=kit_checks,
)

"""The deterministic weight-fill rule `cmet-fill-v1` (conformance kit RULE.md) and state digests.

It gives our modules the same synthetic weights the kit's goldens were made with, from key
names and shapes alone, so conformance needs neither the official checkpoints nor its code.
"""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from cmet_core.backbones.registry import backbone_names, backbone_spec
from cmet_core.modelsets.manifests import Kind

ModelKind = Kind
"""A set member's kind (`manifests.Kind`); `RULES` and each backbone's tools hold the fill rules."""
Fill = tuple[float, float] | None  # (a, s), or None to keep the constructed value
Rule = Callable[[str, torch.Size], Fill]


def fan_in_scale(shape: torch.Size) -> float:
    """1/sqrt(fan-in) of a weight: the scale most rows of the kit's tables use."""
    return 1.0 / math.sqrt(shape[1] * math.prod(shape[2:]))


def connector_rule(key: str, shape: torch.Size) -> Fill:
    last = key.rsplit(".", 1)[-1]
    if last in ("pe", "num_batches_tracked"):
        return None
    if last == "running_var":
        return 1.0, 0.1
    if last == "running_mean":
        return 0.0, 0.1
    if len(shape) >= 2:
        return 0.0, fan_in_scale(shape)
    if last == "weight":
        return 1.0, 0.1
    return 0.0, 0.1


_STYLE_CONV = re.compile(r"stylegan_decoder\.(style_conv1|style_convs\.\d+)\.(weight|bias)")
_TO_RGB_BIAS = re.compile(r"stylegan_decoder\.(to_rgb1|to_rgbs\.\d+)\.bias")
_SFT_LAST = re.compile(r"condition_(scale|shift)\.\d+\.2\.(weight|bias)")


def gfpgan_rule(key: str, shape: torch.Size) -> Fill:
    """Table `gfpgan`, rows G1..G14 of RULE_gfpgan.md (first match wins; nothing is kept)."""
    last = key.rsplit(".", 1)[-1]
    if key.startswith("stylegan_decoder.noises.noise"):
        return 0.0, 1.0
    if key.endswith(".modulation.bias"):
        return 1.0, 0.1
    if key.endswith(".modulation.weight"):
        return 0.0, fan_in_scale(shape)
    if key.endswith(".modulated_conv.weight"):
        fan = math.prod(shape[2:])  # (1, C_out, C_in, k, k): the leading 1 is a batch axis
        if key.startswith(("stylegan_decoder.to_rgb1.", "stylegan_decoder.to_rgbs.")):
            return 0.0, 0.15 / math.sqrt(fan)
        return 0.0, 1.0 / math.sqrt(fan)
    if m := _STYLE_CONV.fullmatch(key):
        return (0.0, 0.03) if m.group(2) == "weight" else (0.0, 0.05)
    if _TO_RGB_BIAS.fullmatch(key):
        return 0.0, 0.02
    if key == "stylegan_decoder.constant_input.weight":
        return 0.0, 1.0
    if m := _SFT_LAST.fullmatch(key):
        if m.group(2) == "weight":
            return 0.0, 0.25 / math.sqrt(shape[1] * math.prod(shape[2:]))
        return (1.0, 0.05) if m.group(1) == "scale" else (0.0, 0.05)
    if last == "bias":
        return 0.0, 0.05
    return 0.0, fan_in_scale(shape)


def audio2lip_rule(key: str, shape: torch.Size) -> Fill:
    """Table `audio2lip` (audio2lip/RULE_audio2lip.md): the connector's rows plus A4, the lip map's smaller scale."""
    if key == "mapping.weight":
        return 0.0, 0.25 * fan_in_scale(shape)
    return connector_rule(key, shape)


RULES: dict[ModelKind, Rule] = {"connector": connector_rule, "gfpgan": gfpgan_rule, "audio2lip": audio2lip_rule}
"""The kit's rule of each member kind it has goldens for; a backbone's generator has its rule in its tools."""


def rule_of(kind: ModelKind) -> Rule:
    """The fill rule of a member kind, or of a registered backbone's generator."""
    if kind in backbone_names():
        return backbone_spec(kind).require_tools().fill_rule
    return RULES[kind]


@torch.no_grad()
def fill_module(module: nn.Module, kind: ModelKind) -> None:
    """Fill every floating-point tensor of `module` in place per `cmet-fill-v1`."""
    rule = rule_of(kind)
    sd = module.state_dict(keep_vars=True)
    for key in sorted(sd):
        t = sd[key]
        if not t.is_floating_point():
            continue
        fill = rule(key, t.shape)
        if fill is None:
            continue
        a, s = fill
        g = torch.Generator(device="cpu")
        g.manual_seed(zlib.crc32(key.encode("utf-8")))
        z = torch.randn(tuple(t.shape), generator=g, dtype=torch.float32)
        t.copy_(z * s + a)


def state_digest(state: Mapping[str, torch.Tensor], exclude: Iterable[str] = ()) -> str:
    """SHA-256 over sorted keys of utf8(key) + the raw little-endian bytes of each contiguous tensor."""
    skip = set(exclude)
    h = hashlib.sha256()
    for key in sorted(state):
        if key in skip:
            continue
        h.update(key.encode("utf-8"))
        h.update(tensor_bytes(state[key]))
    return h.hexdigest()


def tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().numpy().tobytes()

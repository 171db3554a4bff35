"""The kit's fill table `pdfgc` (RULE_pdfgc.md rows D1..D15 of `cmet-fill-v1`), on `PDFGC`'s prefixed keys.

The prefix is part of each key's seed, so equal checkpoint keys of two networks get different values.
"""

from __future__ import annotations

import re

import torch

from cmet_core.verify.fill import Fill, fan_in_scale

GEN = "net_generator."
_TO_RGB = re.compile(r"net_generator\.(to_rgb1|to_rgbs\.\d+)\.(bias|conv\.weight)")


def pdfgc_rule(key: str, shape: torch.Size) -> Fill:
    """(a, s) of one key's fill, or None to keep its constructed value; the first matching row wins."""
    last = key.rsplit(".", 1)[-1]
    gen = key.startswith(GEN)
    if last == "num_batches_tracked" or (gen and last == "kernel"):  # D1, D2
        return None
    if key.startswith(GEN + "noises.noise_"):  # D3
        return 0.0, 1.0
    if last == "running_var":  # D4
        return 1.0, 0.1
    if last == "running_mean":  # D5
        return 0.0, 0.1
    if gen:
        if key.endswith(".modulation.bias"):  # D6
            return 1.0, 0.1
        if key.endswith((".noise.weight", ".activate.bias")):  # D7, D8
            return 0.0, 0.05
        if m := _TO_RGB.fullmatch(key):  # D9, D10
            return (0.0, 0.02) if m.group(2) == "bias" else (0.0, 0.15)
        return (0.0, 0.05) if last == "bias" else (0.0, 1.0)  # D11, D12
    if len(shape) == 1 and last == "weight":  # D13
        return 1.0, 0.1
    if last == "bias":  # D14
        return 0.0, 0.05
    return 0.0, fan_in_scale(shape)  # D15

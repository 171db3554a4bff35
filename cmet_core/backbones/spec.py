"""What a model set needs to know about a backbone without importing torch: its widths and how to open it.

The service and `cmet models list` read sets without torch; everything here is plain data, and a
backbone's loaders import their network only when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmet_core.networks.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

    from cmet_core.backbones.base import Backbone
    from cmet_core.networks.runtime import RuntimeOptions
    from cmet_core.verify.goldens import GroupResult


@dataclass(frozen=True)
class Widths:
    """The sizes other models must match: the connector edits `exp`, a lip model writes the `lip_part`."""

    exp: int
    lip: int
    lip_part: str


@dataclass(frozen=True)
class Framing:
    """How the pipeline cuts the face for the backbone: a square crop of `size` px at the tracked box.

    `window` (top, left, bottom, right, in crop pixels) is the part of the crop the rendered image covers
    when a backbone cuts a fixed window of its own (PD-FGC's rows 0..191, columns 16..207 of its 224 px
    crop); None: the render covers the whole crop (EDTalk).
    """

    size: int
    window: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class BackboneTools:
    """What making, converting and checking sets of a backbone needs (torch side, so handed out on demand
    by `BackboneSpec.tools`): the generator from a member config, the kit's fill rule, the configs of
    `make-tiny` and `make-filled`, the converter of its published checkpoint and its conformance groups."""

    network: Callable[[Mapping[str, Any]], torch.nn.Module]
    """(member config) -> the generator with fresh weights (its state dict is what a member file holds)."""
    fill_rule: Callable[[str, torch.Size], tuple[float, float] | None]
    """The kit's `cmet-fill-v1` rule of the generator: (key, shape) -> (a, s), or None to keep the value."""
    tiny: Mapping[str, Any]
    """The config of `make-tiny`'s generator (small, fast, random)."""
    full: Mapping[str, Any]
    """The config of `make-filled`'s generator (the published size)."""
    convert: Callable[[Path, Path, str], Path]
    """(published checkpoint, set folder, version) -> the member manifest written into the folder."""
    conformance: Callable[[Path], Iterator[GroupResult]]
    """(conformance kit folder) -> the backbone's golden groups (nothing when the kit has none of them)."""
    kit_files: tuple[str, ...] = ()
    """The kit files of its own groups beyond the kit's root files, relative to the kit folder (for the kit's
    fingerprint)."""


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone. Its generator is the set member of kind `name` (`models.json` names it)."""

    name: str
    widths: Callable[[Mapping[str, Any]], Widths]
    """The widths of a generator with this member config (its manifest's `config`)."""
    load: Callable[[Path, bool], torch.nn.Module]
    """(weights or manifest path, verify digest) -> the generator module, in eval mode."""
    build: Callable[[torch.nn.Module, RuntimeOptions], Backbone]
    """(generator module, runtime options) -> the backbone that encodes and renders on a device."""
    tools: Callable[[], BackboneTools] | None = None
    """The backbone's set-making tools (importing them imports torch); None: sets of it are not made,
    converted or filled here (a test's stand-in)."""
    own_lips: bool = False
    """Its lips always come from speech through its own audio encoder (`Backbone.speech_lips`): its sets need
    no Audio2Lip (`make-tiny` and `make-filled` leave it out, and one that is there is not checked)."""
    controls: frozenset[str] = frozenset()
    """The eye motions an edit may switch off (`gaze`, `blink`: `Backbone.switch_off`); EDTalk has none."""
    exp_features: str = "exp"
    """The tag of its expression features beside a training clip (`NNN_<tag>.npy`, what `cmet-train prep-visual`
    writes and training reads; C-MET's names: `ED_exp`, `PD_FGC_emo`), so one tree holds both backbones'."""

    def require_tools(self) -> BackboneTools:
        """The tools, or a `ModelLoadError` naming the backbone when it registers none."""
        if self.tools is None:
            raise ModelLoadError(f"the {self.name} backbone registers no tools to make, convert or fill its networks")
        return self.tools()


def misfits(backbone: str, widths: Widths, connector_exp: int | None, lip: int | None) -> list[str]:
    """Why a connector editing `connector_exp` codes, or a lip model writing `lip`-wide codes, does not
    fit this backbone (empty when both fit; None: that model is absent)."""
    problems = []
    if connector_exp is not None and connector_exp != widths.exp:
        problems.append(
            f"connector exp_dim {connector_exp} differs from the {backbone} backbone's expression width {widths.exp}"
        )
    if lip is not None and lip != widths.lip:
        problems.append(
            f"lip model lip_dim {lip} differs from the {backbone} backbone's {widths.lip_part!r} width {widths.lip}"
        )
    return problems

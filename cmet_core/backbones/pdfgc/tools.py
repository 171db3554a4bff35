"""PD-FGC's set-making tools (`BackboneTools`): its four networks from a member config, the kit's fill
rule, the tiny and published configs, the strict reader and converter of the four published
checkpoint files (a folder, passed as the set's `--generator`) and its conformance groups.

`entry` hands them out on demand: this module imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cmet_core.backbones.pdfgc.conformance import KIT_DIR, KIT_FILES, kit_checks
from cmet_core.backbones.pdfgc.entry import LICENCE, NAME
from cmet_core.backbones.pdfgc.network import CHECKPOINT_FILES, PDFGC, TINY_PDFGC, PDFGCConfig, unread_keys
from cmet_core.backbones.pdfgc.rule import pdfgc_rule
from cmet_core.backbones.spec import BackboneTools
from cmet_core.modelsets.checkpoints import check_state, load_module, write_model
from cmet_core.modelsets.manifests import Source
from cmet_core.networks.errors import ModelLoadError


def read_published(folder: Path) -> dict[str, torch.Tensor]:
    """The four published checkpoint files of `folder` as one state dict keyed `<attribute>.<key>`."""
    state: dict[str, torch.Tensor] = {}
    for prefix, name in CHECKPOINT_FILES.items():
        path = Path(folder) / name
        try:
            part = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot read PD-FGC's {name} in {folder}: {exc}") from None
        if not isinstance(part, Mapping):
            raise ModelLoadError(f"{path} is not a plain state dict")
        state.update({f"{prefix}.{k}": v for k, v in part.items()})
    return state


def load_published(folder: Path, config: PDFGCConfig = PDFGCConfig()) -> PDFGC:
    """PD-FGC's four networks from the published files, loaded strictly, in eval mode.

    A key no render reads (`unread_keys`: classifiers, the style MLP, the saved noise buffers) may be
    absent from a file, as the original's loader skips or never uses them: it then keeps its
    constructed value, and the error names nothing. Every key a render reads must be in the files.
    """
    net = PDFGC(config)
    own = net.state_dict()
    state = read_published(folder)
    state.update({k: own[k] for k in unread_keys(own) if k not in state})
    check_state(own, state, f"PD-FGC checkpoints in {folder}", "PD-FGC's four networks")
    net.load_state_dict(state, strict=True)
    return net.eval()


def convert_pdfgc(
    src: Path, dest_dir: Path, *, config: PDFGCConfig = PDFGCConfig(), name: str = NAME, version: str = "1.0.0"
) -> Path:
    """The folder of the four published files -> `pdfgc.safetensors` + manifest (one member, loaded
    back strictly); returns the manifest."""
    net = load_published(src, config)
    mpath = write_model(
        net.state_dict(),
        dest_dir,
        kind=NAME,
        name=name,
        version=version,
        config=config.to_dict(),
        source=Source(kind="file", path=str(src)),
        origin=f"{src} ({', '.join(CHECKPOINT_FILES.values())})",
        licence=LICENCE,
    )
    load_module(mpath, NAME)
    return mpath


def _network(config: Mapping[str, Any]) -> PDFGC:
    return PDFGC(PDFGCConfig.from_dict(config))


def _convert(src: Path, dest_dir: Path, version: str) -> Path:
    return convert_pdfgc(src, dest_dir, version=version)


TOOLS = BackboneTools(
    network=_network,
    fill_rule=pdfgc_rule,
    tiny=TINY_PDFGC.to_dict(),
    full=PDFGCConfig().to_dict(),
    convert=_convert,
    conformance=kit_checks,
    kit_files=tuple(f"{KIT_DIR}/{name}" for name in KIT_FILES),
)

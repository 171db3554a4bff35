"""Our checkpoint format: a `*.safetensors` file with a JSON manifest beside it, and the loaders.

The manifest side (no torch) lives in `manifests`; this module adds the state-dict checks, the
module builders and the strict loaders and writers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cmet_core.backbones.registry import backbone_names, backbone_spec
from cmet_core.modelsets.manifests import (
    Kind,
    ModelManifest,
    Source,
    TrainingRecord,
    atomic_path,
    now_utc,
    read_model_manifest,
    sha256_file,
    verify_digest,
    write_manifest,
)
from cmet_core.networks.audio2lip import Audio2Lip, Audio2LipConfig
from cmet_core.networks.connector import Connector, ConnectorConfig
from cmet_core.networks.errors import ModelLoadError, few
from cmet_core.networks.gfpgan import GFPGAN, GFPGANConfig

# ----------------------------------------------------------------------------------------------
# State dicts


def _shape(t: torch.Tensor) -> str:
    return "(" + ",".join(str(s) for s in t.shape) + ")"


def check_state(expected: Mapping[str, torch.Tensor], got: Mapping[str, Any], where: str, target: str) -> None:
    """Compare a state dict with what the module needs, naming the first few offending keys.

    `load_state_dict(strict=True)` would catch the same problems, but with a traceback-sized
    message and after a partial copy; this says in one line what is wrong with which file.
    """
    not_tensors = sorted(k for k, v in got.items() if not isinstance(v, torch.Tensor))
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    mismatched = sorted(
        f"{k} file {_shape(got[k])} {str(got[k].dtype).removeprefix('torch.')} vs model {_shape(v)} "
        f"{str(v.dtype).removeprefix('torch.')}"
        for k, v in expected.items()
        if k in got and isinstance(got[k], torch.Tensor) and (got[k].shape != v.shape or got[k].dtype != v.dtype)
    )
    problems = []
    if not_tensors:
        problems.append(f"{len(not_tensors)} entries that are not tensors: {few(not_tensors)}")
    if missing:
        problems.append(f"{len(missing)} missing keys: {few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape/dtype mismatches: {few(mismatched, 3)}")
    if problems:
        raise ModelLoadError(f"{where} does not fit {target}: " + "; ".join(problems))


def _build(kind: Kind, config: Mapping[str, Any], where: Path) -> torch.nn.Module:
    try:
        if kind in backbone_names():
            return backbone_spec(kind).require_tools().network(config)
        if kind == "connector":
            return Connector(ConnectorConfig(**config))
        if kind == "gfpgan":
            return GFPGAN(GFPGANConfig(**config))
        if kind == "audio2lip":
            return Audio2Lip(Audio2LipConfig.from_dict(config))
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"config of {where} cannot build a {kind} model: {exc}") from None
    raise ModelLoadError(f"{where}: {kind} models are not built from a state dict")


def describe(kind: Kind, module: torch.nn.Module) -> str:
    cfg = getattr(module, "cfg", getattr(module, "config", None))
    return f"{kind} {cfg}" if cfg is not None else kind


def load_module(path: Path, kind: Kind, *, verify: bool = True) -> torch.nn.Module:
    """Build the module from its manifest config and load the safetensors weights strictly."""

    manifest, weights = read_model_manifest(path, kind)
    if verify:
        verify_digest(manifest, weights)
    try:
        state = load_file(weights, device="cpu")
    except SafetensorError as exc:
        raise ModelLoadError(f"{weights} is not a readable safetensors file (truncated or corrupt?): {exc}") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read {weights}: {exc}") from None
    module = _build(kind, manifest.config, weights)
    check_state(module.state_dict(), state, str(weights), describe(kind, module))
    module.load_state_dict(state, strict=True)
    return module.eval()


def load_connector(path: Path, *, verify: bool = True) -> Connector:
    """A C-MET connector from `connector.safetensors` (or its manifest), in eval mode."""
    module = load_module(path, "connector", verify=verify)
    assert isinstance(module, Connector)
    return module


def load_gfpgan(path: Path, *, verify: bool = True) -> GFPGAN:
    """A GFPGAN v1.4 restorer from `gfpgan.safetensors` (or its manifest), in eval mode."""
    module = load_module(path, "gfpgan", verify=verify)
    assert isinstance(module, GFPGAN)
    return module


def load_audio2lip(path: Path, *, verify: bool = True) -> Audio2Lip:
    """Audio2Lip from `audio2lip.safetensors` (or its manifest), in eval mode (BatchNorm on its running statistics)."""
    module = load_module(path, "audio2lip", verify=verify)
    assert isinstance(module, Audio2Lip)
    return module


def write_model(
    state: Mapping[str, torch.Tensor],
    dest_dir: Path,
    *,
    kind: Kind,
    name: str,
    version: str,
    config: Mapping[str, Any],
    source: Source,
    stem: str | None = None,
    origin: str | None = None,
    training: TrainingRecord | None = None,
    licence: str | None = None,
) -> Path:
    """Write `<stem>.safetensors` and its manifest after checking the state fits the config.

    The header gets a single metadata key: safetensors writes several in a random order, and
    the same weights must always give the same bytes and sha256.

    `origin` names where the state came from, for the error message when it does not fit.
    """

    stem = stem or kind
    dest_dir = Path(dest_dir)
    weights = dest_dir / f"{stem}.safetensors"
    module = _build(kind, config, weights)
    check_state(module.state_dict(), state, origin or f"state for {weights}", describe(kind, module))
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    manifest = ModelManifest(
        name=name,
        version=version,
        kind=kind,
        file=weights.name,
        sha256=sha256_file(weights),
        size=weights.stat().st_size,
        num_tensors=len(tensors),
        config=dict(config),
        source=source,
        created_at=now_utc(),
        training=training,
        licence=licence,
    )
    mpath = dest_dir / f"{stem}.json"
    write_manifest(manifest, mpath)
    return mpath

"""Export: a run's newest checkpoint, or the official C-MET file, as a version in the connector registry.

A trained version's manifest carries the whole training configuration, the data fingerprint,
the last evaluation's figures, the step count and the parent version it was started from.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

from cmet_core.backbones.registry import DEFAULT_BACKBONE
from cmet_core.modelsets.checkpoints import load_connector, write_model
from cmet_core.modelsets.convert import convert_connector
from cmet_core.modelsets.manifests import ModelManifest, Source, TrainingRecord, semver_key
from cmet_core.modelsets.registry import Registry, choose
from training.model import connector_config
from training.trainer import final_state, read_run

Bump = Literal["major", "minor", "patch"]


def start_from(
    selection: str | None, registry: Registry | None = None, backbone: str = DEFAULT_BACKBONE
) -> tuple[dict[str, Any] | None, str | None]:
    """The `backbone`'s registry connector a run starts from and its version (the run's parent), if any."""
    if selection is None:
        return None, None
    choice = choose(selection, registry, backbone)
    assert choice is not None
    return load_connector(choice.registry.local_weights(choice.version)).state_dict(), choice.version


def next_version(registry: Registry, bump: Bump = "minor") -> str:
    """The newest version in the registry bumped (0.1.0 for an empty registry)."""
    versions = registry.versions()
    if not versions:
        return "0.1.0"
    major, minor, patch = semver_key(versions[-1])[:3]
    if bump == "major":
        return f"{major + 1}.0.0"
    if bump == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def export_run(run_dir: Path, registry: Registry, version: str | None = None, bump: Bump = "minor") -> ModelManifest:
    """Publish the run's newest checkpoint among the `registry`'s versions, which must be those of the run's backbone
    (`open_registry(..., backbone=...)`): a connector edits one backbone's code."""
    cfg, data_fingerprint, parent = read_run(run_dir)
    if registry.backbone != cfg.backbone:
        raise ValueError(
            f"run {run_dir} trained a connector for {cfg.backbone}; the registry was opened for {registry.backbone}"
        )
    state = final_state(run_dir)
    connector = {k.removeprefix("connector."): v for k, v in state["model"].items() if k.startswith("connector.")}
    record = TrainingRecord(
        config=cfg.to_data(),
        data_fingerprint=data_fingerprint,
        metrics=dict(state["last_eval"]),
        steps=int(state["step"]),
        parent=parent,
    )
    with tempfile.TemporaryDirectory(prefix="cmet-export-") as scratch:
        manifest_path = write_model(
            connector,
            Path(scratch),
            kind="connector",
            name=cfg.name,
            version=version or next_version(registry, bump),
            config=connector_config(cfg).to_dict(),
            source=Source(kind="trained", seed=cfg.seed),
            origin=f"run {run_dir}",
            training=record,
        )
        return registry.publish(manifest_path)


def import_official(pth: Path, registry: Registry, version: str = "1.0.0") -> ModelManifest:
    """The published C-MET connector `.pth`, strictly loaded, as a registry version of its own."""
    with tempfile.TemporaryDirectory(prefix="cmet-import-") as scratch:
        manifest_path = convert_connector(Path(pth), Path(scratch), name="cmet-connector-official", version=version)
        return registry.publish(manifest_path)

"""Converters from the published files to our format (see `checkpoints`).

* a backbone's published generator: its own converter (`BackboneTools.convert`), built on `convert_member`.
* the C-MET connector `.pth`: a dict whose `state_dict` entry is the connector's state dict,
  next to `optimizer`, `global_step` and `global_epoch`, which we drop.
* `GFPGANv1.4.pth`: a dict whose `params_ema` entry (the EMA weights GFPGANer loads) is the
  restorer's state dict, its 15 noise buffers included; `params`, if present, is dropped.
* `Audio2Lip.pt`: a dict whose `audio2lip` entry is Audio2Lip's state dict (BatchNorm statistics included).
* emotion2vec+: `config.yaml` + `model.pt`, copied as they are (funasr must load them) after
  checking that both parse.

Pickles are read with `torch.load(weights_only=True)`, which runs no code. If a file also holds
objects of other classes (training arguments, say), the safe loader refuses it; only then we
load it again with those classes replaced by inert placeholders, say so with a warning, and keep
only the tensors. We never fall back to `weights_only=False`.
"""

from __future__ import annotations

import os
import pickle
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from cmet_core.modelsets.checkpoints import load_module, write_model
from cmet_core.modelsets.manifests import (
    Kind,
    ModelManifest,
    Source,
    directory_digest,
    now_utc,
    sha256_file,
    write_manifest,
)
from cmet_core.networks.audio2lip import Audio2LipConfig
from cmet_core.networks.connector import ConnectorConfig
from cmet_core.networks.errors import ModelLoadError
from cmet_core.networks.gfpgan import LICENCE as GFPGAN_LICENCE
from cmet_core.networks.gfpgan import GFPGANConfig

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"


class CheckpointWarning(UserWarning):
    """A published checkpoint needed the placeholder fallback to load."""


def _placeholder(qualified: str) -> tuple[type, str]:
    """An inert class standing in for `qualified` during a weights-only load: it stores, never runs."""
    module, _, name = qualified.rpartition(".")

    class Inert:
        __slots__ = ("args", "state")
        args: tuple[Any, ...]
        state: Any

        def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
            obj = object.__new__(cls)
            obj.args, obj.state = args, kwargs or None
            return obj

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __setstate__(self, state: Any) -> None:
            self.state = state

        def __repr__(self) -> str:
            return f"<placeholder for {qualified}>"

    Inert.__module__, Inert.__qualname__, Inert.__name__ = module, name, name
    return Inert, qualified


def read_torch_checkpoint(path: Path) -> Any:
    """Load a torch pickle on the CPU without running its code; clear errors for bad files."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise ModelLoadError(f"checkpoint {path} does not exist") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read checkpoint {path}: {exc}") from None
    if not head:
        raise ModelLoadError(f"checkpoint {path} is empty")
    is_zip = head == _ZIP_MAGIC
    if not is_zip and not head.startswith(_PICKLE_MAGIC):
        raise ModelLoadError(
            f"{path} is not a PyTorch checkpoint (it starts with {head!r}, not a zip or pickle header)"
        )

    def load() -> Any:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)

    try:
        try:
            return load()
        except pickle.UnpicklingError as exc:
            if not is_zip or "Weights only load failed" not in str(exc):
                raise
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
            if not unsafe:
                raise
        warnings.warn(
            f"{path} holds objects of {', '.join(unsafe)}, which torch's weights-only loader refuses; "
            "they were read as inert placeholders (no code was run) and only the tensors are used",
            CheckpointWarning,
            stacklevel=2,
        )
        with torch.serialization.safe_globals([_placeholder(name) for name in unsafe]):
            return load()
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path} cannot be loaded safely as a weights-only checkpoint: {first}") from None
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, AttributeError, IndexError) as exc:
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path} is truncated or corrupt: {detail}") from None


def extract_state(checkpoint: Any, key: str, path: Path, what: str) -> dict[str, torch.Tensor]:
    """The state dict stored under `key`, or a message saying what the file holds instead."""
    if not isinstance(checkpoint, Mapping):
        raise ModelLoadError(f"{path} is not a {what} checkpoint: it holds a {type(checkpoint).__name__}, not a dict")
    if key not in checkpoint:
        found = ", ".join(repr(k) for k in list(checkpoint)[:8]) or "nothing"
        raise ModelLoadError(f"{path} is not a {what} checkpoint: no {key!r} entry (top-level keys: {found})")
    state = checkpoint[key]
    if not isinstance(state, Mapping) or not state:
        raise ModelLoadError(f"{path}: entry {key!r} is not a state dict ({type(state).__name__})")
    return dict(state)


def _source_for(path: Path, source: Source | None) -> Source:
    return source if source is not None else Source(kind="file", path=str(path), sha256=sha256_file(path))


def convert_member(
    src: Path,
    dest_dir: Path,
    kind: Kind,
    key: str,
    what: str,
    config: Mapping[str, Any],
    name: str,
    version: str,
    source: Source | None,
    licence: str | None = None,
) -> Path:
    """The state dict under `key` of the published checkpoint `src` (a `what`), written as a member of
    `kind` with `config` into `dest_dir` and loaded back strictly; returns the manifest."""

    state = extract_state(read_torch_checkpoint(src), key, Path(src), what)
    mpath = write_model(
        state,
        dest_dir,
        kind=kind,
        name=name,
        version=version,
        config=config,
        source=_source_for(src, source),
        origin=f"{src} (entry {key!r})",
        licence=licence,
    )
    load_module(mpath, kind)
    return mpath


def convert_connector(
    src: Path,
    dest_dir: Path,
    *,
    config: ConnectorConfig = ConnectorConfig(),
    name: str = "cmet-connector",
    version: str = "1.0.0",
    source: Source | None = None,
) -> Path:
    """C-MET `*.pth` (`{"state_dict": ..., "optimizer": ...}`) -> `connector.safetensors` + manifest."""
    return convert_member(
        src, dest_dir, "connector", "state_dict", "C-MET connector", config.to_dict(), name, version, source
    )


def convert_gfpgan(
    src: Path,
    dest_dir: Path,
    *,
    config: GFPGANConfig = GFPGANConfig(),
    name: str = "gfpgan-v1.4",
    version: str = "1.4.0",
    source: Source | None = None,
    licence: str | None = GFPGAN_LICENCE,
) -> Path:
    """`GFPGANv1.4.pth` (`{"params_ema": state_dict, ...}`) -> `gfpgan.safetensors` + manifest, loaded back strictly."""
    return convert_member(
        src, dest_dir, "gfpgan", "params_ema", "GFPGAN restorer", config.to_dict(), name, version, source, licence
    )


def convert_audio2lip(
    src: Path,
    dest_dir: Path,
    *,
    config: Audio2LipConfig = Audio2LipConfig(),
    name: str = "audio2lip",
    version: str = "1.0.0",
    source: Source | None = None,
) -> Path:
    """`Audio2Lip.pt` (`{"audio2lip": state_dict, ...}`) -> `audio2lip.safetensors` + manifest, loaded strictly."""
    return convert_member(src, dest_dir, "audio2lip", "audio2lip", "Audio2Lip", config.to_dict(), name, version, source)


def read_emotion2vec_config(path: Path) -> dict[str, Any]:
    """The parsed `config.yaml`; funasr needs `model` and a full `model_conf`."""

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"emotion2vec config {path} does not exist") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"emotion2vec config {path} is not readable YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or "model" not in data or not isinstance(data.get("model_conf"), dict):
        raise ModelLoadError(f"{path} is not an emotion2vec config.yaml: it needs `model` and a `model_conf` mapping")
    return data


def _tensor_count(checkpoint: Any, path: Path) -> int:
    """Number of tensors in an emotion2vec `model.pt`, wherever funasr would find its state dict."""
    state = checkpoint
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(checkpoint.get(key), Mapping):
                state = checkpoint[key]
                break
    count = sum(isinstance(v, torch.Tensor) for v in state.values()) if isinstance(state, Mapping) else 0
    if not count:
        raise ModelLoadError(f"{path} holds no tensors; it is not an emotion2vec model.pt")
    return count


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where possible: the published model.pt is about 2 GB and already in the hub cache.

    Set files are never changed in place (writes replace them), so sharing the bytes is safe.
    """
    if dst.exists():
        dst.unlink()
    try:
        os.link(os.path.realpath(src), dst)
    except OSError:
        shutil.copyfile(src, dst)


def import_emotion2vec(
    config_yaml: Path,
    model_pt: Path,
    dest_dir: Path,
    *,
    name: str = "emotion2vec-plus-large",
    version: str = "1.0.0",
    source: Source | None = None,
    stem: str = "emotion2vec",
    extra: Sequence[Path] = (),
) -> Path:
    """Copy a funasr emotion2vec model into `dest_dir/<stem>/` and write `<stem>.json`; returns the manifest.

    `extra` files are copied beside `config.yaml` and `model.pt`: funasr sizes the published
    model's 9-class head from `tokens.txt`, so without it the weights do not fit.
    """
    conf = read_emotion2vec_config(config_yaml)
    num_tensors = _tensor_count(read_torch_checkpoint(model_pt), Path(model_pt))
    target = Path(dest_dir) / stem
    target.mkdir(parents=True, exist_ok=True)
    copies = {"config.yaml": Path(config_yaml), "model.pt": Path(model_pt)} | {Path(p).name: Path(p) for p in extra}
    for filename, src in copies.items():
        _link_or_copy(src, target / filename)
    files = {filename: sha256_file(target / filename) for filename in sorted(copies)}
    embed_dim = conf["model_conf"].get("embed_dim")
    manifest = ModelManifest(
        name=name,
        version=version,
        kind="emotion2vec",
        file=stem,
        sha256=directory_digest(files),
        size=sum((target / f).stat().st_size for f in files),
        files=files,
        num_tensors=num_tensors,
        config={"model": conf["model"], "embed_dim": embed_dim},
        source=_source_for(Path(model_pt), source),
        created_at=now_utc(),
    )
    mpath = Path(dest_dir) / f"{stem}.json"
    write_manifest(manifest, mpath)
    return mpath

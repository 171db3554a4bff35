"""Finding and reading model sets on disk, without torch (the service reads them too).

A models dir holds one folder per set; a set is a folder with a `models.json` naming its three
models (see `registry` for writing and loading them).
"""

from __future__ import annotations

from pathlib import Path

from cmet_core.models.errors import ModelLoadError
from cmet_core.models.manifests import SET_MANIFEST, Kind, ModelManifest, SetManifest, read_json_model, read_model_manifest
from cmet_core.settings import get_settings

_LOOSE_WEIGHTS = ("*.pt", "*.pth", "*.safetensors", "*.bin", "*.ckpt")


def default_models_dir() -> Path:
    return get_settings().resolved_models_dir


def no_set_message(root: Path) -> str:
    """What to do when there are no weights: where they go and the two ways to get them."""
    where = "" if Path(root) == default_models_dir() else f" --dir {root}"
    return (
        f"no model set at {root}; run `cmet models pull{where}` (needs network; downloads the published "
        f"weights and converts them into {Path(root) / 'official'}) or `cmet models make-tiny {Path(root) / 'tiny'}` "
        "for a small random set"
    )


def is_set(path: Path) -> bool:
    return (Path(path) / SET_MANIFEST).is_file()


def discover_sets(root: Path) -> list[Path]:
    """`root` itself when it is a set, else its sub-folders that are sets (staging folders skipped)."""
    root = Path(root)
    if is_set(root):
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and is_set(p))


def _not_a_set(path: Path) -> ModelLoadError:
    loose = sorted({p.name for pattern in _LOOSE_WEIGHTS for p in path.glob(pattern)})
    if loose:
        return ModelLoadError(
            f"{path} holds model files ({', '.join(loose[:4])}) but no {SET_MANIFEST}; official checkpoints must be "
            "converted: run `cmet models convert` on them or `cmet models pull`"
        )
    return ModelLoadError(no_set_message(path))


def select_set(root: Path | None = None, name: str | None = None) -> Path:
    """The set to use: `root/name`, `root` itself, its only set, or its `official` set."""
    root = Path(root) if root is not None else default_models_dir()
    if name is not None:
        path = root / name
        if not is_set(path):
            names = ", ".join(p.name for p in discover_sets(root)) or "none"
            raise ModelLoadError(f"no model set named {name!r} in {root} (sets there: {names})")
        return path
    sets = discover_sets(root)
    if not sets:
        raise _not_a_set(root) if root.is_dir() else ModelLoadError(no_set_message(root))
    if len(sets) == 1:
        return sets[0]
    for preferred in ("official", "filled", "tiny"):
        if root / preferred in sets:
            return root / preferred
    raise ModelLoadError(f"{root} holds several model sets ({', '.join(p.name for p in sets)}); name one")


def read_set(set_dir: Path) -> SetManifest:
    set_dir = Path(set_dir)
    if not is_set(set_dir):
        raise _not_a_set(set_dir) if set_dir.is_dir() else ModelLoadError(no_set_message(set_dir))
    return read_json_model(set_dir / SET_MANIFEST, SetManifest, "set manifest")


def model_manifest(set_dir: Path, manifest: SetManifest, kind: Kind) -> tuple[ModelManifest, Path]:
    """A member's manifest and weights path, checked against the set's entry."""
    entry = manifest.models[kind]
    model, weights = read_model_manifest(Path(set_dir) / entry.manifest, kind)
    if model.sha256 != entry.sha256:
        raise ModelLoadError(
            f"{Path(set_dir) / entry.manifest} does not belong to set {manifest.name}: its sha256 differs from {SET_MANIFEST}"
        )
    return model, weights

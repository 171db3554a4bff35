"""Model sets: a folder with the three models that work together and a `models.json` naming them.

Layout of a set (see `checkpoints` for the model format)::

    SET/models.json                                  set manifest: name, version, the three entries
    SET/<backbone>.safetensors  SET/<backbone>.json  the generator of the backbone `models.json` names
    SET/connector.safetensors   SET/connector.json   C-MET connector (optional: without it, no edit; cmet-train)
    SET/emotion2vec/            SET/emotion2vec.json funasr model dir (config.yaml, model.pt)
    SET/gfpgan.safetensors      SET/gfpgan.json      optional: GFPGAN v1.4 face restorer (`enhance`)
    SET/audio2lip.safetensors   SET/audio2lip.json   Audio2Lip, speech to lips (optional: dubbing only)

The models dir (setting `CMET_MODELS_DIR`, default `~/.cache/cmet/models`, which `CMET_DATA_DIR` does
not move) holds one folder per set. This module finds, reads and loads sets; importing it does not
import torch (the service reads sets too), only `load_set` does. Writing and verifying sets is `build`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cmet_core.backbones.registry import DEFAULT_BACKBONE, backbone_spec
from cmet_core.backbones.spec import Widths, misfits
from cmet_core.errors import ErrorCode, InputError
from cmet_core.modelsets.manifests import (
    SET_MANIFEST,
    Kind,
    ModelManifest,
    SetManifest,
    read_json_model,
    read_model_manifest,
    verify_digest,
)
from cmet_core.networks.errors import ModelLoadError
from cmet_core.settings import get_settings

if TYPE_CHECKING:
    import torch

    from cmet_core.backbones.base import Backbone
    from cmet_core.modelsets.registry import ConnectorChoice
    from cmet_core.networks.audio2lip import Audio2Lip
    from cmet_core.networks.connector import Connector
    from cmet_core.networks.gfpgan import GFPGAN
    from cmet_core.networks.runtime import RuntimeOptions

AUDIO2LIP_LIP_DIM = 20
"""The lip width of Audio2Lip manifests written before they recorded `lip_dim` (the published model's)."""
_LOOSE_WEIGHTS = ("*.pt", "*.pth", "*.safetensors", "*.bin", "*.ckpt")


def default_models_dir() -> Path:
    return get_settings().resolved_models_dir


def no_set_message(root: Path) -> str:
    """What to do when there are no weights: where they go and the two ways to get them."""
    settings = get_settings()
    where = "" if Path(root) == default_models_dir() else f" {root}"
    chosen = (
        f" (the models dir, set by CMET_MODELS_DIR={settings.models_dir})"
        if settings.models_dir is not None and Path(root) == settings.models_dir
        else ""
    )
    return (
        f"no model set at {root}{chosen}; run `cmet models pull{where}` (needs network; downloads the published "
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


def no_connector(name: str, backbone: str) -> InputError:
    """The refusal of a target that needs the connector on set `name` that has none (the CLI's and the worker's
    editor, and the API at submission)."""
    return InputError(
        ErrorCode.CONNECTOR_MISSING,
        f"model set {name} has no C-MET connector for its {backbone} backbone: train one with `cmet-train` "
        "(prep-visual, train, export) and serve it with `--connector`; an expression reference "
        "(--expression-from, `expression_reference`) needs none",
    )


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
            f"{Path(set_dir) / entry.manifest} does not belong to set {manifest.name}: its sha256 "
            f"differs from {SET_MANIFEST}"
        )
    return model, weights


# ----------------------------------------------------------------------------------------------
# Listing, loading


NO_LICENCE = "not recorded"
"""What `cmet models list` says of weights whose manifest records no licence (ours, or converted by hand)."""


@dataclass
class ModelRow:
    set_name: str
    set_version: str
    kind: str
    name: str
    version: str
    size: int
    source: str
    sha256: str
    licence: str = NO_LICENCE


def list_models(root: Path) -> tuple[list[ModelRow], list[str]]:
    """Rows for every model of every set under `root`, and messages for sets that cannot be read."""
    rows: list[ModelRow] = []
    problems: list[str] = []
    for set_dir in discover_sets(root):
        try:
            manifest = read_set(set_dir)
            for kind in manifest.kinds:
                model, _ = model_manifest(set_dir, manifest, kind)
                summary = model.source.summary()
                label = set_dir.name if set_dir.name == manifest.name else f"{set_dir.name} ({manifest.name})"
                row = ModelRow(
                    label, manifest.version, kind, model.name, model.version, model.size, summary, model.sha256
                )
                if model.licence:
                    row.licence = model.licence
                rows.append(row)
        except ModelLoadError as exc:
            problems.append(str(exc))
    return rows, problems


@dataclass
class Check:
    kind: str
    name: str
    status: Literal["ok", "failed"]
    detail: str

    def line(self) -> str:
        return f"{self.kind} {self.name}: {self.detail}"


def compatibility(configs: dict[str, dict[str, Any]], backbone: str = DEFAULT_BACKBONE) -> list[Check]:
    """The models must agree on the sizes they pass to each other: the connector and the lip model
    against the backbone's widths, emotion2vec against the connector."""
    checks: list[Check] = []
    gen, con, e2v, a2l = (configs.get(k) for k in (backbone, "connector", "emotion2vec", "audio2lip"))
    if gen:
        connector_exp = con.get("exp_dim") if con else None
        spec = backbone_spec(backbone)
        lip = a2l.get("lip_dim", AUDIO2LIP_LIP_DIM) if a2l and not spec.own_lips else None
        widths = spec.widths(gen)
        checks += [
            Check("set", "compatibility", "failed", msg) for msg in misfits(backbone, widths, connector_exp, lip)
        ]
    if con and e2v and e2v.get("embed_dim") is not None and e2v["embed_dim"] != con.get("speech_dim"):
        msg = f"emotion2vec embed_dim {e2v['embed_dim']} differs from connector speech_dim {con.get('speech_dim')}"
        checks.append(Check("set", "compatibility", "failed", msg))
    return checks


@dataclass
class ModelSet:
    """A loaded set: the torch modules, and the emotion2vec dir for the speech encoder.

    `connector_choice` is set when the connector came from the registry instead of the set."""

    path: Path
    manifest: SetManifest
    generator: torch.nn.Module
    """The backbone's generator network (`manifest.backbone` names the backbone)."""
    connector: Connector | None
    """The C-MET connector; None in a set without one (a backbone nobody published one for): every edit is
    refused with `connector_missing` until `cmet-train` trains one and `use_connector` serves it."""
    emotion2vec_dir: Path
    connector_choice: ConnectorChoice | None = None
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    restorer: GFPGAN | None = None
    """The optional face restorer; None in a set without one (then `enhance` stays off)."""
    audio2lip: Audio2Lip | None = None
    """Speech to lip motion; None in a set made without it (dubbing is then refused, edits work)."""

    @property
    def backbone(self) -> str:
        return self.manifest.backbone

    @property
    def connector_label(self) -> str:
        """name@version of the connector that serves."""
        if self.connector_choice is not None:
            return f"{self.connector_choice.manifest.name}@{self.connector_choice.version}"
        if "connector" not in self.manifest.models:
            return "none"
        entry = self.manifest.models["connector"]
        return f"{entry.name}@{entry.version}"

    def build_backbone(self, runtime: RuntimeOptions) -> Backbone:
        """The set's backbone on the device `runtime` names."""
        return backbone_spec(self.backbone).build(self.generator, runtime)

    def check_fit(self, backbone: str, widths: Widths) -> None:
        """Refuse a backbone whose widths the set's connector or lip model do not match (a backbone with its
        own lips never uses the set's lip model)."""
        unused = backbone_spec(backbone).own_lips
        lip = self.audio2lip.config.lip_dim if self.audio2lip is not None and not unused else None
        exp = self.connector.cfg.exp_dim if self.connector is not None else None
        problems = misfits(backbone, widths, exp, lip)
        if problems:
            raise ModelLoadError(f"set {self.manifest.name} does not fit its backbone: " + "; ".join(problems))

    def use_connector(self, choice: ConnectorChoice) -> None:
        """Serve a registry connector instead of the current one, once it is known to fit the set."""
        from cmet_core.modelsets.checkpoints import load_connector  # deferred: torch

        connector = load_connector(choice.registry.local_weights(choice.version))
        problems = compatibility({**self.configs, "connector": connector.cfg.to_dict()}, self.backbone)
        if problems:
            raise ModelLoadError(
                f"registry connector {choice.version} does not fit set {self.manifest.name}: "
                + "; ".join(c.detail for c in problems)
            )
        self.connector, self.connector_choice = connector, choice


def load_set(set_dir: Path | None = None, *, verify: bool = True, connector: ConnectorChoice | None = None) -> ModelSet:
    """Load the set at `set_dir` (default: the one `select_set` picks in the models dir); `connector`
    replaces the set's own connector with a registry version."""
    from cmet_core.modelsets.checkpoints import load_audio2lip, load_connector, load_gfpgan  # deferred: torch

    path = Path(set_dir) if set_dir is not None else select_set()
    manifest = read_set(path)
    gen, gen_weights = model_manifest(path, manifest, manifest.backbone)
    e2v, e2v_dir = model_manifest(path, manifest, "emotion2vec")
    if verify:
        verify_digest(e2v, e2v_dir)
    configs = {manifest.backbone: gen.config, "emotion2vec": e2v.config}
    models = ModelSet(
        path,
        manifest,
        backbone_spec(manifest.backbone).load(gen_weights, verify),
        None,
        e2v_dir,
        configs=configs,
    )
    if "connector" in manifest.models:
        _, con_weights = model_manifest(path, manifest, "connector")
        models.connector = load_connector(con_weights, verify=verify)
    if "gfpgan" in manifest.models:
        _, restorer_weights = model_manifest(path, manifest, "gfpgan")
        models.restorer = load_gfpgan(restorer_weights, verify=verify)
    if "audio2lip" in manifest.models:
        a2l, a2l_weights = model_manifest(path, manifest, "audio2lip")
        models.audio2lip = load_audio2lip(a2l_weights, verify=verify)
        configs["audio2lip"] = a2l.config
    if connector is not None:
        models.use_connector(connector)
    return models

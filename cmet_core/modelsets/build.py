"""Building model sets: make-tiny, make-filled, convert from official files, and verify.

Sets are written into a hidden staging folder beside their destination and renamed into place
only after they verify, so an interrupted pull or make-tiny never leaves a half set. Reading and
loading sets is `sets`.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from cmet_core.backbones.registry import DEFAULT_BACKBONE, backbone_spec
from cmet_core.modelsets.checkpoints import load_audio2lip, load_connector, load_gfpgan, write_model
from cmet_core.modelsets.convert import convert_audio2lip, convert_connector, convert_gfpgan, import_emotion2vec
from cmet_core.modelsets.manifests import (
    OPTIONAL_KINDS,
    SET_MANIFEST,
    SHARED_KINDS,
    BackboneKind,
    Kind,
    SetEntry,
    SetManifest,
    Source,
    now_utc,
    read_model_manifest,
    verify_digest,
    write_manifest,
)
from cmet_core.modelsets.sets import (
    Check,
    compatibility,
    is_set,
    model_manifest,
    read_set,
)
from cmet_core.modelsets.speech_tiny import make_tiny_emotion2vec
from cmet_core.networks.audio2lip import TINY_AUDIO2LIP, Audio2Lip, Audio2LipConfig
from cmet_core.networks.connector import TINY_CONNECTOR, Connector, ConnectorConfig
from cmet_core.networks.errors import ModelLoadError
from cmet_core.networks.gfpgan import GFPGAN, TINY_GFPGAN, GFPGANConfig
from cmet_core.networks.speech import SpeechEncoder
from cmet_core.verify.fill import fill_module

# One shallow block as wide as emotion2vec+ large (1024-d, the connector's speech_dim): about 50 MB.
TINY_EMOTION2VEC: dict[str, Any] = {
    "embed_dim": TINY_CONNECTOR.speech_dim,
    "depth": 1,
    "prenet_depth": 0,
    "heads": 16,
    "mlp_ratio": 1.0,
}


# ----------------------------------------------------------------------------------------------
# Writing sets


@contextmanager
def staged_set(dest: Path, force: bool = False) -> Iterator[Path]:
    """A staging folder that replaces `dest` atomically (a rename) when the block succeeds."""
    dest = Path(dest).absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        if not force:
            raise ModelLoadError(f"{dest} already exists and is not empty; pass --force to replace it")
        if not is_set(dest):
            raise ModelLoadError(f"{dest} exists but is not a model set; refusing to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        yield stage
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
            dest.rename(old)
            stage.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            stage.rename(dest)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def write_set_manifest(
    set_dir: Path, name: str, version: str, description: str = "", backbone: BackboneKind = DEFAULT_BACKBONE
) -> SetManifest:
    """Describe the models already in `set_dir` (the `backbone`'s generator and emotion2vec, and the
    optional ones there: the connector, the restorer, Audio2Lip) in its `models.json`."""
    entries: dict[Kind, SetEntry] = {}
    present = [k for k in OPTIONAL_KINDS if (Path(set_dir) / f"{k}.json").is_file()]
    for kind in (backbone, *SHARED_KINDS, *present):
        model, _ = read_model_manifest(Path(set_dir) / f"{kind}.json", kind)
        entries[kind] = SetEntry(manifest=f"{kind}.json", name=model.name, version=model.version, sha256=model.sha256)
    manifest = SetManifest(
        name=name, version=version, description=description, created_at=now_utc(), backbone=backbone, models=entries
    )
    write_manifest(manifest, Path(set_dir) / SET_MANIFEST)
    return manifest


def finish_set(
    stage: Path, name: str, version: str, description: str, backbone: BackboneKind = DEFAULT_BACKBONE
) -> SetManifest:
    """Write the set manifest and refuse to publish a set that does not verify."""
    manifest = write_set_manifest(stage, name, version, description, backbone)
    report = verify_set(stage)
    if not report.ok:
        raise ModelLoadError(f"the new set {name} does not verify: " + "; ".join(c.line() for c in report.failures))
    return manifest


def add_tiny_emotion2vec(stage: Path, seed: int, name: str = "emotion2vec-tiny", **sizes: Any) -> Path:
    """A small random emotion2vec (funasr layout) made by the speech module, described by our manifest."""

    scratch = Path(tempfile.mkdtemp(prefix=".e2v-", dir=stage))
    try:
        made = Path(make_tiny_emotion2vec(scratch / "emotion2vec", seed=seed, **sizes))
        extra = sorted(p for p in made.iterdir() if p.is_file() and p.name not in ("config.yaml", "model.pt"))
        return import_emotion2vec(
            made / "config.yaml",
            made / "model.pt",
            stage,
            name=name,
            version=f"0.1.0+seed.{seed}",
            source=Source(kind="make-tiny", seed=seed),
            extra=extra,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _add_member(
    stage: Path, kind: Kind, net: torch.nn.Module, config: dict[str, Any], label: str, version: str, source: Source
) -> Path:
    """One model of a made set (`make-tiny`, `make-filled`), named `<kind>-<label>`, beside the others."""
    return write_model(
        net.state_dict(), stage, kind=kind, name=f"{kind}-{label}", version=version, config=config, source=source
    )


def _randomise_batchnorm(module: torch.nn.Module) -> None:
    """Running statistics away from (0, 1), so a tiny Audio2Lip's eval-mode BatchNorm does something."""
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.normal_(0.0, 0.1)
            bn.running_var.uniform_(0.5, 1.5)


def make_tiny_set(
    dest: Path,
    seed: int = 0,
    *,
    force: bool = False,
    name: str = "tiny",
    restorer: bool = True,
    audio2lip: bool = True,
    connector: bool = True,
    backbone: BackboneKind = DEFAULT_BACKBONE,
) -> Path:
    """A complete random set with the tiny configs: fast enough for tests and development.

    The `backbone`'s tiny generator (its tools' `tiny` config), and a connector and Audio2Lip as wide
    as its expression and lip codes. `restorer=False` leaves out the optional face restorer (a set that
    cannot `enhance`), `audio2lip=False` the optional Audio2Lip (a set that edits but cannot dub; a
    backbone with its own lips never gets one),
    `connector=False` the connector (a set that cannot edit, as a converted PD-FGC set before `cmet-train`)."""
    spec = backbone_spec(backbone)
    tools = spec.require_tools()
    widths = spec.widths(tools.tiny)
    with staged_set(dest, force) as stage:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen, con = tools.network(tools.tiny), Connector(replace(TINY_CONNECTOR, exp_dim=widths.exp))
            tiny_restorer = GFPGAN(TINY_GFPGAN)
        source, version = Source(kind="make-tiny", seed=seed), f"0.1.0+seed.{seed}"
        if restorer:
            fill_module(tiny_restorer, "gfpgan")  # the kit's rule: well-conditioned, seed-independent
            _add_member(stage, "gfpgan", tiny_restorer, TINY_GFPGAN.to_dict(), "tiny", version, source)
        _add_member(stage, backbone, gen, dict(tools.tiny), "tiny", version, source)
        if connector:
            _add_member(stage, "connector", con, con.cfg.to_dict(), "tiny", version, source)
        if audio2lip and not spec.own_lips:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                a2l = Audio2Lip(replace(TINY_AUDIO2LIP, lip_dim=widths.lip))
                _randomise_batchnorm(a2l)
            _add_member(stage, "audio2lip", a2l, a2l.config.to_dict(), "tiny", version, source)
        add_tiny_emotion2vec(stage, seed, **TINY_EMOTION2VEC)
        finish_set(stage, name, version, f"random tiny models (seed {seed}); not for real output", backbone)
    return Path(dest)


def make_filled_set(
    dest: Path, *, force: bool = False, name: str = "filled", seed: int = 0, backbone: BackboneKind = DEFAULT_BACKBONE
) -> Path:
    """The `backbone`'s full-size generator, connector, face restorer and Audio2Lip (unless the backbone has
    its own lips) filled by rule cmet-fill-v1 (benchmarks without official weights).

    The emotion2vec part is random and shallow (one block, about 76 MB) but as wide as the
    published one, so its vectors fit the connector's `speech_dim` of 1024.
    """

    spec = backbone_spec(backbone)
    tools = spec.require_tools()
    widths = spec.widths(tools.full)
    with staged_set(dest, force) as stage:
        gen = tools.network(tools.full)
        con, restorer = Connector(ConnectorConfig(exp_dim=widths.exp)), GFPGAN(GFPGANConfig())
        fill_module(gen, backbone)
        fill_module(con, "connector")
        fill_module(restorer, "gfpgan")
        source = Source(kind="cmet-fill-v1")
        _add_member(stage, "gfpgan", restorer, restorer.cfg.to_dict(), "filled", "1.4.0", source)
        if not spec.own_lips:
            a2l = Audio2Lip(Audio2LipConfig(lip_dim=widths.lip))
            fill_module(a2l, "audio2lip")
            _add_member(stage, "audio2lip", a2l, a2l.config.to_dict(), "filled", "1.0.0", source)
        _add_member(stage, backbone, gen, dict(tools.full), "filled", "1.0.0", source)
        _add_member(stage, "connector", con, con.cfg.to_dict(), "filled", "1.0.0", source)
        add_tiny_emotion2vec(
            stage, seed, name="emotion2vec-random", embed_dim=con.cfg.speech_dim, depth=1, prenet_depth=0
        )
        finish_set(
            stage,
            name,
            "1.0.0",
            "full-size models filled by cmet-fill-v1; emotion2vec is shallow and random",
            backbone,
        )
    return Path(dest)


def convert_set(
    dest: Path,
    generator_pt: Path,
    connector_pth: Path | None,
    emotion2vec_dir: Path,
    *,
    force: bool = False,
    name: str = "official",
    version: str = "1.0.0",
    gfpgan_pth: Path | None = None,
    audio2lip_pt: Path | None = None,
    backbone: BackboneKind = DEFAULT_BACKBONE,
) -> Path:
    """A set from official files already on disk (e.g. downloaded by hand).

    `generator_pt` is the `backbone`'s published generator (EDTalk's `EDTalk.pt` for the default),
    converted by its tools; `emotion2vec_dir` is the published folder: `config.yaml`, `model.pt` and
    `tokens.txt`; `gfpgan_pth` the optional `GFPGANv1.4.pth`; `audio2lip_pt` (`Audio2Lip.pt`) is
    optional too: without it the set edits but cannot dub. `connector_pth` is None for a backbone nobody
    published a connector for (PD-FGC): the set then reads expression codes for `cmet-train`, and edits
    are refused with `connector_missing`.
    """

    tools = backbone_spec(backbone).require_tools()
    e2v = Path(emotion2vec_dir)
    with staged_set(dest, force) as stage:
        tools.convert(Path(generator_pt), stage, version)
        if connector_pth is not None:
            convert_connector(Path(connector_pth), stage, version=version)
        if audio2lip_pt is not None:
            convert_audio2lip(Path(audio2lip_pt), stage, version=version)
        tokens = [e2v / "tokens.txt"] if (e2v / "tokens.txt").is_file() else []
        import_emotion2vec(e2v / "config.yaml", e2v / "model.pt", stage, version=version, extra=tokens)
        if gfpgan_pth is not None:
            convert_gfpgan(Path(gfpgan_pth), stage)
        finish_set(stage, name, version, "converted from local official files", backbone)
    return Path(dest)


# ----------------------------------------------------------------------------------------------
# Verifying


@dataclass
class SetReport:
    path: Path
    manifest: SetManifest | None
    checks: list[Check] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "failed"]

    @property
    def ok(self) -> bool:
        return self.manifest is not None and not self.failures


def check_emotion2vec(directory: Path) -> str:
    """Load the dir through funasr when it is installed; the speech module checks the tensors arrived."""
    if importlib.util.find_spec("funasr") is None:
        return "files verified; load check skipped (funasr not installed: pip install 'cmet[speech]')"

    try:
        SpeechEncoder(directory, device="cpu")
    except ModelLoadError:
        raise
    except Exception as exc:  # funasr raises many types; the message is what matters here
        raise ModelLoadError(f"emotion2vec at {directory} does not load through funasr: {exc}") from None
    return "files verified; loaded through funasr"


def verify_set(set_dir: Path, *, load: bool = True) -> SetReport:
    """Re-hash every file and strictly load every model; never raises for a bad set, reports it."""
    set_dir = Path(set_dir)
    try:
        manifest = read_set(set_dir)
    except ModelLoadError as exc:
        return SetReport(set_dir, None, [Check("set", set_dir.name, "failed", str(exc))])
    report = SetReport(set_dir, manifest)
    configs: dict[str, dict[str, Any]] = {}
    for kind in manifest.kinds:
        entry = manifest.models[kind]
        try:
            model, weights = model_manifest(set_dir, manifest, kind)
            verify_digest(model, weights)
            configs[kind] = model.config
            if not load:
                detail = "sha256 ok"
            elif kind == manifest.backbone:
                backbone_spec(kind).load(weights, False)
                detail = "sha256 ok; strict load ok"
            elif kind == "connector":
                load_connector(weights, verify=False)
                detail = "sha256 ok; strict load ok"
            elif kind == "gfpgan":
                load_gfpgan(weights, verify=False)
                detail = "sha256 ok; strict load ok"
            elif kind == "audio2lip":
                load_audio2lip(weights, verify=False)
                detail = "sha256 ok; strict load ok"
            else:
                detail = check_emotion2vec(weights)
            report.checks.append(Check(kind, entry.name, "ok", detail))
        except ModelLoadError as exc:
            report.checks.append(Check(kind, entry.name, "failed", str(exc)))
        except OSError as exc:
            report.checks.append(
                Check(kind, entry.name, "failed", f"cannot read {exc.filename or kind}: {exc.strerror or exc}")
            )
    report.checks.extend(compatibility(configs, manifest.backbone))
    return report

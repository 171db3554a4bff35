"""Our checkpoint format's manifests, digests and atomic writes: everything that needs no torch.

The service reads model sets through this module (and `sets`) without importing torch.

Why not keep the official torch pickles: a pickle can run code when it is loaded, says nothing
about the architecture it belongs to, and cannot be checked against a digest by itself. A
manifest records name, semver version, the sha256 of the weights, the dataclass config that
builds the module, and where the weights came from; loaders refuse anything that does not hash,
parse, or load strictly, with a message that names the file and the problem.

The emotion2vec model stays a funasr-loadable directory (`config.yaml` + `model.pt`): funasr
builds and loads it, so we only record its files' digests (`emotion2vec.json` beside the dir).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cmet_core.backbones.registry import DEFAULT_BACKBONE, backbone_names
from cmet_core.networks.errors import ModelLoadError

SpeechKind = Literal["emotion2vec"]
"""The speech encoder an emotion is embedded with."""
FeatureKind = Literal["gfpgan", "audio2lip"]
"""The members one feature needs: the face restorer (`enhance`), Audio2Lip (dubbing)."""
SharedKind = Literal[SpeechKind]
OptionalKind = Literal["connector", FeatureKind]
MemberKind = Literal[SharedKind, OptionalKind]
"""The members that are not a backbone's generator, each name spelled once in the literals above."""
MEMBER_KINDS: tuple[MemberKind, ...] = get_args(MemberKind)


def _backbone_name(value: str) -> str:
    if value not in backbone_names():
        raise ValueError(f"unknown backbone {value!r} (registered: {', '.join(backbone_names())})")
    return value


def _member_kind(value: str) -> str:
    if value not in MEMBER_KINDS and value not in backbone_names():
        known = ", ".join((*backbone_names(), *MEMBER_KINDS))
        raise ValueError(f"unknown model kind {value!r} (known: {known})")
    return value


BackboneKind = Annotated[str, AfterValidator(_backbone_name)]
"""A registered backbone's name (`cmet_core.backbones.registry`); the set's generator is the member of that kind."""
Kind = Annotated[str, AfterValidator(_member_kind)]
"""A set member's kind: a registered backbone's name (its generator) or one of `MEMBER_KINDS`."""
SHARED_KINDS: tuple[SharedKind, ...] = get_args(SharedKind)
"""The members every set has beside its backbone's generator."""
OPTIONAL_KINDS: tuple[OptionalKind, ...] = get_args(OptionalKind)
"""Members a set may have; a set without one loads, only the feature that needs it is off (`enhance`
without the GFPGAN restorer, dubbing with `lips: speech` without Audio2Lip, every edit without the
connector: a set of a backbone nobody published a connector for reads expression codes, which is
what `cmet-train prep-visual` needs to train one)."""
MODEL_FORMAT: Final = "cmet-model/1"
SET_FORMAT: Final = "cmet-model-set/1"
SET_MANIFEST = "models.json"

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_SHA256 = r"^[0-9a-f]{64}$"
_NAME = r"^[a-z0-9][a-z0-9._+-]*$"
_PLAIN_FILE = r"^[^/\\]*[^/\\.][^/\\]*$"  # a name beside the manifest (not '.' or '..'), never a path


def _check_semver(value: str) -> str:
    if not _SEMVER.fullmatch(value):
        raise ValueError(f"version {value!r} is not semantic versioning (MAJOR.MINOR.PATCH[-pre][+build])")
    return value


def is_semver(value: str) -> bool:
    return _SEMVER.fullmatch(value) is not None


# (major, minor, patch, pre-release key, build): the pre-release key is (1,) for a release, else
# (0, one (kind, number, text) triple per dot-separated identifier)
SemverKey = tuple[int, int, int, tuple[int | tuple[int, int, str], ...], str]


def semver_key(value: str) -> SemverKey:
    """Sort key by SemVer 2.0 precedence: a pre-release sorts before its release; build metadata is
    ignored for precedence but breaks ties, so the order is total."""
    core, _, build = value.partition("+")
    core, _, pre = core.partition("-")
    major, minor, patch = (int(p) for p in core.split("."))
    pre_key: tuple[int | tuple[int, int, str], ...] = (
        (1,) if not pre else (0, *((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    )
    return (major, minor, patch, pre_key, build)


# ----------------------------------------------------------------------------------------------
# Manifests


class Source(BaseModel):
    """Where a model's weights came from, so a set can be rebuilt and audited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["hub", "url", "file", "make-tiny", "cmet-fill-v1", "trained"]
    repo_id: str | None = None
    filename: str | None = None
    revision: str | None = Field(default=None, description="Hub commit the file was resolved to.")
    url: str | None = None
    path: str | None = None
    sha256: str | None = Field(default=None, pattern=_SHA256, description="Digest of the original file.")
    seed: int | None = None

    def summary(self) -> str:
        if self.kind == "hub":
            rev = f"@{self.revision[:10]}" if self.revision else ""
            return f"hf:{self.repo_id}/{self.filename}{rev}"
        if self.kind == "file":
            return f"file:{self.path}"
        if self.kind == "url":
            return f"url:{self.url}"
        if self.kind == "make-tiny":
            return f"make-tiny seed={self.seed}"
        if self.kind == "trained":
            return f"trained seed={self.seed}"
        return self.kind


class TrainingRecord(BaseModel):
    """How a trained connector was made, so a served version can be traced back and compared."""

    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] = Field(description="The whole training configuration, as data.")
    data_fingerprint: str = Field(
        pattern=_SHA256, description="Digest of the training data (clip list and feature digests)."
    )
    metrics: dict[str, float] = Field(default_factory=dict, description="The last evaluation's figures.")
    steps: int = Field(ge=0)
    parent: str | None = Field(default=None, description="Registry version training started from, if any.")


class ModelManifest(BaseModel):
    """`<stem>.json` beside `<stem>.safetensors` (or beside the `<stem>/` dir for emotion2vec)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["cmet-model/1"] = MODEL_FORMAT
    name: str = Field(pattern=_NAME)
    version: str
    kind: Kind
    file: str = Field(
        pattern=_PLAIN_FILE, description="The weights beside this manifest: a file, or a dir for emotion2vec."
    )
    sha256: str = Field(pattern=_SHA256, description="Of the file; for a directory, of its sorted file digests.")
    size: int = Field(ge=0, description="Bytes, all files together.")
    files: dict[str, str] | None = Field(default=None, description="Directory models: relative path -> sha256.")
    num_tensors: int | None = None
    config: dict[str, Any]
    source: Source
    created_at: datetime
    training: TrainingRecord | None = None
    licence: str | None = Field(default=None, description="What is known of the weights' licence, for operators.")

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        return _check_semver(value)

    @model_validator(mode="after")
    def _files_for_directories(self) -> ModelManifest:
        if (self.kind == "emotion2vec") != (self.files is not None):
            raise ValueError("`files` lists the files of directory models (emotion2vec) and only those")
        for name in self.files or {}:
            if name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"file {name!r} leaves the model directory")
        return self


class SetEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    manifest: str = Field(pattern=_PLAIN_FILE, description="The model manifest, inside the set folder.")
    name: str
    version: str
    sha256: str = Field(pattern=_SHA256)


class SetManifest(BaseModel):
    """`models.json` of a model set: the three models that work together, and the optional ones."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["cmet-model-set/1"] = SET_FORMAT
    name: str = Field(pattern=_NAME)
    version: str
    description: str = ""
    created_at: datetime
    backbone: BackboneKind = Field(
        default=DEFAULT_BACKBONE,
        description="The generator backbone; sets written before the field existed have the default one.",
    )
    models: dict[Kind, SetEntry]

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        return _check_semver(value)

    @model_validator(mode="after")
    def _complete(self) -> SetManifest:
        missing = [k for k in self.required if k not in self.models]
        if missing:
            needs = ", ".join(self.required)
            raise ValueError(f"a model set with backbone {self.backbone} needs {needs}; missing {', '.join(missing)}")
        return self

    @property
    def required(self) -> tuple[Kind, ...]:
        """The backbone's generator and emotion2vec."""
        return (self.backbone, *SHARED_KINDS)

    @property
    def kinds(self) -> list[Kind]:
        """The required models, then the optional ones this set has."""
        return [k for k in (*self.required, *OPTIONAL_KINDS) if k in self.models]


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _validation_message(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()[:4]]
    more = f" (+{exc.error_count() - 4} more)" if exc.error_count() > 4 else ""
    return "; ".join(parts) + more


_Model = TypeVar("_Model", bound=BaseModel)


def read_json_model(path: Path, model: type[_Model], what: str) -> _Model:
    """Parse a manifest, turning every failure into a ModelLoadError that names the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelLoadError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"cannot read {what} {path}: {exc}") from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise ModelLoadError(f"{what} {path} is not valid JSON (truncated or corrupt?)") from None
        raise ModelLoadError(f"{what} {path} is invalid: {_validation_message(exc)}") from None


# ----------------------------------------------------------------------------------------------
# Files and digests


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def directory_digest(files: Mapping[str, str]) -> str:
    """One digest for a directory model: sha256 over `sha256  relpath` lines, sorted by path."""
    lines = "".join(f"{files[name]}  {name}\n" for name in sorted(files))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside `target` that replaces it only when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_manifest(manifest: BaseModel, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(manifest.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")


def manifest_path_for(path: Path) -> Path:
    """The manifest of `path`: itself if .json, else `<stem>.json` beside the file or directory."""
    path = Path(path)
    if path.suffix == ".json":
        return path
    if path.is_dir() and (path / SET_MANIFEST).is_file():
        raise ModelLoadError(f"{path} is a model set; pass it to the set functions or name one of its models")
    return path.with_name(path.stem + ".json") if path.suffix == ".safetensors" else path.with_name(path.name + ".json")


def read_model_manifest(path: Path, kind: Kind | None = None) -> tuple[ModelManifest, Path]:
    """Manifest and weights path of a model given as its weights or its manifest."""
    path = Path(path)
    mpath = manifest_path_for(path)
    if not mpath.exists():
        if not path.exists():
            raise ModelLoadError(f"model {path} does not exist")
        raise ModelLoadError(
            f"model {path} has no manifest {mpath.name} beside it; convert official files with "
            "`cmet models pull` or the converters instead of copying weights by hand"
        )
    manifest: ModelManifest = read_json_model(mpath, ModelManifest, "model manifest")
    if kind is not None and manifest.kind != kind:
        raise ModelLoadError(f"model manifest {mpath} describes a {manifest.kind} model, not {kind}")
    weights = mpath.parent / manifest.file
    if not weights.exists():
        raise ModelLoadError(f"model manifest {mpath} names {manifest.file}, which is missing from {mpath.parent}")
    return manifest, weights


def verify_digest(manifest: ModelManifest, weights: Path) -> None:
    """Re-hash the weights; a mismatch means a changed, truncated or swapped file."""
    if (manifest.files is None) == weights.is_dir():
        expected = "a directory" if manifest.files is not None else "a file"
        raise ModelLoadError(f"{weights} should be {expected} according to its manifest")
    if manifest.files is None:
        actual = sha256_file(weights)
        if actual != manifest.sha256:
            raise ModelLoadError(
                f"sha256 mismatch for {weights}: manifest says {manifest.sha256[:16]}..., file has {actual[:16]}... "
                "(file changed, truncated or replaced; re-create the model set)"
            )
        return
    on_disk = {p.relative_to(weights).as_posix() for p in weights.rglob("*") if p.is_file()}
    missing = sorted(set(manifest.files) - on_disk)
    if missing:
        raise ModelLoadError(f"model directory {weights} is missing {', '.join(missing)}")
    for name, expected in sorted(manifest.files.items()):
        actual = sha256_file(weights / name)
        if actual != expected:
            raise ModelLoadError(
                f"sha256 mismatch for {weights / name}: manifest says {expected[:16]}..., file has {actual[:16]}..."
            )
    if directory_digest(manifest.files) != manifest.sha256:
        raise ModelLoadError(f"model manifest for {weights} is inconsistent: its files do not add up to its sha256")

"""The connector registry: versioned connector checkpoints (trained or imported) and which one serves.

Layout, the same in a directory and under an S3 prefix::

    REGISTRY/connector/<version>/connector.safetensors
    REGISTRY/connector/<version>/connector.json     our model manifest; `training` says how it was made
    REGISTRY/connector-<backbone>/<version>/...     the same for another backbone than EDTalk (`pdfgc`)

Each backbone has its own versions, since a connector edits one backbone's expression code (its width):
`latest` on a PD-FGC deployment is the newest PD-FGC connector, never an EDTalk one.

A version is published by writing its weights first and its manifest last, so a version without
a manifest is an unfinished upload and is not listed. Versions never change once published:
publishing an existing one is refused. Torch-free: the API reads the registry to say what serves.

What serves is a *selection*: `latest` (the highest version by SemVer precedence, pre-releases
excluded), a pinned version, or nothing (the model set's own connector).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cmet_core.backbones.registry import DEFAULT_BACKBONE
from cmet_core.modelsets.manifests import (
    ModelManifest,
    is_semver,
    read_model_manifest,
    semver_key,
    sha256_file,
    verify_digest,
)
from cmet_core.modelsets.s3 import s3_client
from cmet_core.networks.errors import ModelLoadError
from cmet_core.settings import CoreSettings, get_settings

KIND_DIR = "connector"
MANIFEST = "connector.json"
LATEST = "latest"


def area(backbone: str) -> str:
    """The folder of a backbone's versions: `connector` for EDTalk (registries written before there was a
    choice), `connector-<name>` for the others."""
    return KIND_DIR if backbone == DEFAULT_BACKBONE else f"{KIND_DIR}-{backbone}"


class Registry(Protocol):
    where: str
    backbone: str

    def versions(self) -> list[str]:
        """Published versions, lowest first."""

    def manifest(self, version: str) -> ModelManifest: ...

    def local_weights(self, version: str) -> Path:
        """A verified local copy of the version's weights (with its manifest beside it)."""

    def publish(self, manifest_path: Path) -> ModelManifest:
        """Add the model at `manifest_path` (manifest + weights beside it) under its own version."""


def _check_version(version: str) -> str:
    if not is_semver(version):
        raise ModelLoadError(f"{version!r} is not a version (MAJOR.MINOR.PATCH) or {LATEST!r}")
    return version


def _unknown(version: str, where: str, versions: list[str]) -> ModelLoadError:
    return ModelLoadError(
        f"connector version {version} is not in the registry {where} (versions: {', '.join(versions) or 'none'})"
    )


def _publishable(manifest_path: Path) -> tuple[ModelManifest, Path]:
    manifest, weights = read_model_manifest(manifest_path, "connector")
    verify_digest(manifest, weights)
    return manifest, weights


class DirectoryRegistry:
    def __init__(self, root: Path, backbone: str = DEFAULT_BACKBONE) -> None:
        self.root, self.backbone = Path(root), backbone
        self.where = str(self.root)

    def _dir(self, version: str) -> Path:
        return self.root / area(self.backbone) / _check_version(version)

    def versions(self) -> list[str]:
        base = self.root / area(self.backbone)
        if not base.is_dir():
            return []
        found = [p.name for p in base.iterdir() if is_semver(p.name) and (p / MANIFEST).is_file()]
        return sorted(found, key=semver_key)

    def manifest(self, version: str) -> ModelManifest:
        path = self._dir(version) / MANIFEST
        if not path.is_file():
            raise _unknown(version, self.where, self.versions())
        return read_model_manifest(path, "connector")[0]

    def local_weights(self, version: str) -> Path:
        manifest = self.manifest(version)
        weights = self._dir(version) / manifest.file
        verify_digest(manifest, weights)
        return weights

    def publish(self, manifest_path: Path) -> ModelManifest:
        manifest, weights = _publishable(manifest_path)
        dest = self._dir(manifest.version)
        if dest.exists():
            raise ModelLoadError(
                f"connector version {manifest.version} already exists in {self.where}; versions never "
                "change, pick another"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{manifest.version}.", suffix=".partial", dir=dest.parent))
        try:
            shutil.copyfile(weights, stage / manifest.file)
            shutil.copyfile(manifest_path, stage / MANIFEST)
            try:
                os.rename(stage, dest)
            except OSError:
                raise ModelLoadError(
                    f"connector version {manifest.version} was published to {self.where} meanwhile"
                ) from None
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return manifest


class S3Registry:
    """A registry under `s3://bucket/prefix`; downloads are cached by digest and verified."""

    def __init__(self, bucket: str, prefix: str, settings: CoreSettings, backbone: str = DEFAULT_BACKBONE) -> None:
        self.bucket, self.prefix, self.backbone = bucket, prefix.strip("/"), backbone
        self.where = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = s3_client(settings)
        self.cache = settings.data_dir / "cache" / "registry"

    def _key(self, version: str, name: str) -> str:
        parts = [self.prefix, area(self.backbone), _check_version(version), name]
        return "/".join(p for p in parts if p)

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError  # deferred: botocore

        try:
            return fn(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(kwargs.get("Key", "")) from None
            raise ModelLoadError(f"registry {self.where}: {what} failed: {exc}") from None
        except BotoCoreError as exc:
            raise ModelLoadError(f"registry {self.where}: {what} failed: {exc}") from None

    def versions(self) -> list[str]:
        base = "/".join(p for p in (self.prefix, area(self.backbone)) if p) + "/"
        found: list[str] = []
        token: dict[str, str] = {}
        while True:
            page = self._call("listing", self.client.list_objects_v2, Bucket=self.bucket, Prefix=base, **token)
            for obj in page.get("Contents", []):
                version, _, name = obj["Key"][len(base) :].partition("/")
                if name == MANIFEST and is_semver(version):
                    found.append(version)
            if not page.get("IsTruncated"):
                return sorted(found, key=semver_key)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def manifest(self, version: str) -> ModelManifest:
        try:
            body = self._call(
                "reading a manifest", self.client.get_object, Bucket=self.bucket, Key=self._key(version, MANIFEST)
            )
        except FileNotFoundError:
            raise _unknown(version, self.where, self.versions()) from None
        try:
            return ModelManifest.model_validate_json(body["Body"].read())
        except ValueError as exc:
            raise ModelLoadError(f"registry {self.where}: the manifest of {version} is invalid: {exc}") from None

    def local_weights(self, version: str) -> Path:
        manifest = self.manifest(version)
        local = self.cache / manifest.sha256
        weights = local / manifest.file
        if not weights.is_file() or sha256_file(weights) != manifest.sha256:
            local.mkdir(parents=True, exist_ok=True)
            partial = local / f".{manifest.file}.partial"
            try:
                self._call(
                    "download",
                    self.client.download_file,
                    Bucket=self.bucket,
                    Key=self._key(version, manifest.file),
                    Filename=str(partial),
                )
            except FileNotFoundError:
                raise ModelLoadError(
                    f"registry {self.where}: version {version} has a manifest but no {manifest.file}"
                ) from None
            os.replace(partial, weights)
            (local / MANIFEST).write_text(
                manifest.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8"
            )
        verify_digest(manifest, weights)
        return weights

    def publish(self, manifest_path: Path) -> ModelManifest:
        manifest, weights = _publishable(manifest_path)
        try:
            self._call(
                "checking", self.client.head_object, Bucket=self.bucket, Key=self._key(manifest.version, MANIFEST)
            )
        except FileNotFoundError:
            pass
        else:
            raise ModelLoadError(
                f"connector version {manifest.version} already exists in {self.where}; versions never "
                "change, pick another"
            )
        self._call(
            "upload",
            self.client.upload_file,
            Filename=str(weights),
            Bucket=self.bucket,
            Key=self._key(manifest.version, manifest.file),
        )
        self._call(
            "upload",
            self.client.put_object,
            Bucket=self.bucket,
            Key=self._key(manifest.version, MANIFEST),
            Body=Path(manifest_path).read_bytes(),
            ContentType="application/json",
        )
        return manifest


def open_registry(
    location: str | Path | None = None, settings: CoreSettings | None = None, backbone: str = DEFAULT_BACKBONE
) -> Registry:
    """The `backbone`'s versions in the registry at `location` (a directory or s3://bucket/prefix); default: the
    `registry` setting."""
    settings = settings or get_settings()
    where = str(location) if location is not None else settings.resolved_registry
    if where.startswith("s3://"):
        bucket, _, prefix = where.removeprefix("s3://").partition("/")
        if not bucket:
            raise ModelLoadError(f"registry {where!r} names no bucket")
        return S3Registry(bucket, prefix, settings, backbone)
    return DirectoryRegistry(Path(where), backbone)


def resolve(registry: Registry, selection: str) -> str:
    """`latest` -> the highest released version (pre-releases only when nothing else exists); else the pin itself."""
    versions = registry.versions()
    if selection != LATEST:
        _check_version(selection)
        if selection not in versions:
            raise _unknown(selection, registry.where, versions)
        return selection
    if not versions:
        raise ModelLoadError(
            f"the registry {registry.where} holds no {registry.backbone} connector yet; publish one with `cmet-train "
            "export` (or, for EDTalk, `cmet-train import-official`)"
        )
    released = [v for v in versions if "-" not in v.partition("+")[0]]
    return (released or versions)[-1]


@dataclass(frozen=True)
class ConnectorChoice:
    """Which registry connector serves: the selection as configured and what it resolved to."""

    selection: str
    version: str
    registry: Registry
    manifest: ModelManifest


def choose(
    selection: str | None, registry: Registry | None = None, backbone: str = DEFAULT_BACKBONE
) -> ConnectorChoice | None:
    """Resolve the configured selection among the `backbone`'s versions (None: the model set's own connector, no
    registry involved)."""
    if selection is None:
        return None
    registry = registry or open_registry(backbone=backbone)
    version = resolve(registry, selection)
    return ConnectorChoice(selection, version, registry, registry.manifest(version))

"""`cmet models pull`: download the published weights from the Hugging Face hub into a model set.

Where the files live (one table, `OFFICIAL_FILES`), as published by the authors:
* `coldhyuk/C-MET` (linked from the C-MET README; C-MET's `demo.py` downloads
  `pretrained_weights/EDTalk.pt` and `checkpoints/_epoch_2105_checkpoint_step000200000.pth` from it;
  the repo also hosts `pretrained_weights/Audio2Lip.pt`, speech to lip motion for dubbing, where
  C-MET's `inference.py --opt A` loads it from);
* `emotion2vec/emotion2vec_plus_large`, funasr's hub id for emotion2vec+ large (`config.yaml`,
  `model.pt`, and `tokens.txt`, from which funasr sizes the model's 9-class head);
* the optional face restorer `GFPGANv1.4.pth`, a GitHub release asset of TencentARC/GFPGAN (not
  on the hub, so no hub digest to check it by): fetched from its release URL, or from a mirror
  that serves the same file name, and pinned by its sha256 (`OFFICIAL_RESTORER`).

Which architecture a file is converted to is *declared*, not guessed: a `PullSpec` pairs each
file with its config (the official spec uses the published configs). Shapes cannot tell
everything (the connector's head count and window leave no trace in its state dict), and the
strict load after conversion checks the declaration against the file. A spec can be given as a
JSON file (`cmet models pull --spec`), for a mirror with other names or a small test set.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from cmet_core.backbones.edtalk.network import EDTalkConfig
from cmet_core.backbones.edtalk.tools import convert_edtalk
from cmet_core.modelsets.build import finish_set, staged_set
from cmet_core.modelsets.convert import (
    convert_audio2lip,
    convert_connector,
    convert_gfpgan,
    import_emotion2vec,
)
from cmet_core.modelsets.manifests import Source, atomic_path, read_json_model, sha256_file
from cmet_core.networks.audio2lip import Audio2LipConfig
from cmet_core.networks.connector import ConnectorConfig
from cmet_core.networks.errors import ModelLoadError
from cmet_core.networks.gfpgan import LICENCE as GFPGAN_LICENCE
from cmet_core.networks.gfpgan import GFPGANConfig
from cmet_core.settings import get_settings

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_Config = TypeVar("_Config")


class HubFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    repo_id: str
    filename: str
    revision: str = "main"
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="Pin: refuse any other content.")


OFFICIAL_FILES: dict[str, HubFile] = {
    "edtalk": HubFile(repo_id="coldhyuk/C-MET", filename="pretrained_weights/EDTalk.pt"),
    "connector": HubFile(repo_id="coldhyuk/C-MET", filename="checkpoints/_epoch_2105_checkpoint_step000200000.pth"),
    "audio2lip": HubFile(repo_id="coldhyuk/C-MET", filename="pretrained_weights/Audio2Lip.pt"),
    "emotion2vec_config": HubFile(repo_id="emotion2vec/emotion2vec_plus_large", filename="config.yaml"),
    "emotion2vec_weights": HubFile(repo_id="emotion2vec/emotion2vec_plus_large", filename="model.pt"),
    "emotion2vec_tokens": HubFile(repo_id="emotion2vec/emotion2vec_plus_large", filename="tokens.txt"),
}


class UrlFile(BaseModel):
    """A file published at a plain URL (a release asset): always pinned, nothing else vouches for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://[^/]+/.*[^/]$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Pin: refuse any other content.")

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


OFFICIAL_RESTORER = UrlFile(
    url="https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
    sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
)


class RestorerPull(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: UrlFile = OFFICIAL_RESTORER
    name: str = "gfpgan-v1.4"
    version: str = "1.4.0"
    config: dict[str, Any] = Field(default_factory=lambda: GFPGANConfig().to_dict())
    licence: str = GFPGAN_LICENCE


class ModelPull(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: HubFile
    name: str
    version: str = "1.0.0"
    config: dict[str, Any]


class Emotion2vecPull(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config_file: HubFile
    weights_file: HubFile
    extra_files: list[HubFile] = Field(default_factory=list, description="Copied beside them, e.g. tokens.txt.")
    name: str = "emotion2vec-plus-large"
    version: str = "1.0.0"


class PullSpec(BaseModel):
    """What to download and how to convert it into one set."""

    model_config = ConfigDict(extra="forbid")

    name: str = "official"
    version: str = "1.0.0"
    description: str = "published C-MET, EDTalk, Audio2Lip and emotion2vec+ large weights"
    edtalk: ModelPull
    connector: ModelPull
    emotion2vec: Emotion2vecPull
    restorer: RestorerPull | None = Field(default=None, description="The optional face restorer (`enhance`).")
    audio2lip: ModelPull | None = Field(default=None, description="Optional: without it the set cannot dub.")


OFFICIAL_SPEC = PullSpec(
    edtalk=ModelPull(file=OFFICIAL_FILES["edtalk"], name="edtalk", config=EDTalkConfig().to_dict()),
    connector=ModelPull(file=OFFICIAL_FILES["connector"], name="cmet-connector", config=ConnectorConfig().to_dict()),
    audio2lip=ModelPull(file=OFFICIAL_FILES["audio2lip"], name="audio2lip", config=Audio2LipConfig().to_dict()),
    emotion2vec=Emotion2vecPull(
        config_file=OFFICIAL_FILES["emotion2vec_config"],
        weights_file=OFFICIAL_FILES["emotion2vec_weights"],
        extra_files=[OFFICIAL_FILES["emotion2vec_tokens"]],
    ),
    restorer=RestorerPull(),
    description="published C-MET, EDTalk, Audio2Lip and emotion2vec+ large weights, and the GFPGAN v1.4 face restorer",
)


def _config(factory: Callable[..., _Config], values: dict[str, Any], kind: str) -> _Config:
    try:
        return factory(**values)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"pull spec: the {kind} config is invalid: {exc}") from None


def load_spec(path: Path) -> PullSpec:
    return read_json_model(Path(path), PullSpec, "pull spec")


def resolve_endpoint(endpoint: str | None = None) -> str | None:
    """Explicit argument, then setting `CMET_HF_ENDPOINT`, then `HF_ENDPOINT` (read now, not at import)."""
    return endpoint or get_settings().hf_endpoint or os.environ.get("HF_ENDPOINT") or None


def download(
    file: HubFile, *, endpoint: str | None, cache_dir: Path | None, token: str | None = None
) -> tuple[Path, Source]:
    """Fetch one file into the hub cache, pinned to the commit the hub reports, and check its digest."""
    # deferred: huggingface_hub
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{file.repo_id}/{file.filename}@{file.revision} from {endpoint or 'huggingface.co'}"
    try:
        url = hf_hub_url(file.repo_id, file.filename, revision=file.revision, endpoint=endpoint)
        meta = get_hf_file_metadata(url, token=token, endpoint=endpoint)
        commit = meta.commit_hash or file.revision
        local = Path(
            hf_hub_download(
                file.repo_id, file.filename, revision=commit, endpoint=endpoint, cache_dir=cache_dir, token=token
            )
        )
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        raise ModelLoadError(f"cannot download {where}: not found on the hub ({type(exc).__name__})") from None
    except HfHubHTTPError as exc:
        raise ModelLoadError(f"cannot download {where}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # httpx / OS / offline errors: all mean "no file", say which and why
        raise ModelLoadError(f"cannot download {where} (network needed): {type(exc).__name__}: {exc}") from None
    digest = sha256_file(local)
    if file.sha256 is not None and digest != file.sha256:
        raise ModelLoadError(f"{where}: sha256 {digest[:16]}... is not the pinned {file.sha256[:16]}...")
    etag = (meta.etag or "").lower()
    if _SHA256.fullmatch(etag) and etag != digest:
        raise ModelLoadError(
            f"{where}: downloaded file's sha256 {digest[:16]}... differs from the hub's {etag[:16]}..."
        )
    source = Source(kind="hub", repo_id=file.repo_id, filename=file.filename, revision=commit, url=url, sha256=digest)
    return local, source


def download_url(file: UrlFile, *, cache_dir: Path, mirror: str | None = None) -> tuple[Path, Source]:
    """Fetch a pinned file from its URL (or `mirror`/<its file name>) into `cache_dir`, checked as it streams.

    A cached copy with the pinned digest is used again; a file with another digest is never kept.
    """
    url = f"{mirror.rstrip('/')}/{file.filename}" if mirror else file.url
    target = Path(cache_dir) / file.sha256[:16] / file.filename
    if not target.is_file() or sha256_file(target) != file.sha256:
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as answer, atomic_path(target) as tmp, open(tmp, "wb") as out:
                while chunk := answer.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                if digest.hexdigest() != file.sha256:
                    raise ModelLoadError(
                        f"{url}: sha256 {digest.hexdigest()[:16]}... is not the pinned {file.sha256[:16]}..."
                    )
        except urllib.error.HTTPError as exc:
            raise ModelLoadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ModelLoadError(f"cannot download {url} (network needed): {type(exc).__name__}: {reason}") from None
    return target, Source(kind="url", url=url, filename=file.filename, sha256=file.sha256)


def pull_restorer(stage: Path, restorer: RestorerPull, *, cache_dir: Path, mirror: str | None = None) -> Path:
    """Download the restorer and convert it (entry `params_ema`, strict) into `stage`; returns its manifest."""
    config = _config(GFPGANConfig, restorer.config, "restorer")
    path, source = download_url(restorer.file, cache_dir=cache_dir, mirror=mirror)
    return convert_gfpgan(
        path,
        stage,
        config=config,
        name=restorer.name,
        version=restorer.version,
        source=source,
        licence=restorer.licence,
    )


def pull(
    root: Path | None = None,
    spec: PullSpec = OFFICIAL_SPEC,
    *,
    endpoint: str | None = None,
    cache_dir: Path | None = None,
    token: str | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    mirror: str | None = None,
) -> Path:
    """Download, verify and convert the files of `spec` into the set `root/spec.name`; returns its path.

    `mirror` is a base URL serving the restorer's file under its own name, instead of its release URL."""
    say = progress or (lambda _msg: None)
    root = Path(root) if root is not None else get_settings().resolved_models_dir
    endpoint = resolve_endpoint(endpoint)
    cache = cache_dir or (Path(os.environ["HF_HUB_CACHE"]) if os.environ.get("HF_HUB_CACHE") else None)
    dest = root / spec.name
    ed_config = _config(EDTalkConfig, spec.edtalk.config, "edtalk")
    con_config = _config(ConnectorConfig, spec.connector.config, "connector")
    a2l = spec.audio2lip
    a2l_config = _config(lambda **v: Audio2LipConfig.from_dict(v), a2l.config, "audio2lip") if a2l else None
    with staged_set(dest, force) as stage:
        say(f"downloading {spec.edtalk.file.repo_id}/{spec.edtalk.file.filename}")
        path, source = download(spec.edtalk.file, endpoint=endpoint, cache_dir=cache, token=token)
        say("converting EDTalk")
        convert_edtalk(path, stage, config=ed_config, name=spec.edtalk.name, version=spec.edtalk.version, source=source)
        say(f"downloading {spec.connector.file.repo_id}/{spec.connector.file.filename}")
        path, source = download(spec.connector.file, endpoint=endpoint, cache_dir=cache, token=token)
        say("converting connector")
        convert_connector(
            path, stage, config=con_config, name=spec.connector.name, version=spec.connector.version, source=source
        )
        if a2l is not None and a2l_config is not None:
            say(f"downloading {a2l.file.repo_id}/{a2l.file.filename}")
            path, source = download(a2l.file, endpoint=endpoint, cache_dir=cache, token=token)
            say("converting Audio2Lip")
            convert_audio2lip(path, stage, config=a2l_config, name=a2l.name, version=a2l.version, source=source)
        e2v = spec.emotion2vec
        say(f"downloading {e2v.weights_file.repo_id}/{e2v.config_file.filename}, {e2v.weights_file.filename}")
        conf_path, _ = download(e2v.config_file, endpoint=endpoint, cache_dir=cache, token=token)
        weights_path, source = download(e2v.weights_file, endpoint=endpoint, cache_dir=cache, token=token)
        extra = [download(f, endpoint=endpoint, cache_dir=cache, token=token)[0] for f in e2v.extra_files]
        import_emotion2vec(
            conf_path, weights_path, stage, name=e2v.name, version=e2v.version, source=source, extra=extra
        )
        if spec.restorer is not None:
            say(f"downloading {mirror or spec.restorer.file.url}")
            pull_restorer(stage, spec.restorer, cache_dir=cache or root / ".downloads", mirror=mirror)
        say("verifying")
        finish_set(stage, spec.name, spec.version, spec.description)
    return dest

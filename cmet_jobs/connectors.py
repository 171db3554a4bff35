"""The set the workers serve, as the API reads it (its manifest only, no torch), and the refusal at
submission of a target that needs a connector the set lacks (`connector_missing`, decision 0040)."""

from __future__ import annotations

from pathlib import Path

from cmet_core.modelsets.manifests import SetManifest
from cmet_core.modelsets.sets import no_connector, read_set, select_set
from cmet_core.networks.errors import ModelLoadError
from cmet_jobs.errors import RequestError
from cmet_jobs.settings import JobsSettings


def served(settings: JobsSettings) -> tuple[Path, SetManifest]:
    """The served set's folder and manifest; `ModelLoadError` when it cannot be read."""
    path = select_set(settings.models_set or settings.resolved_models_dir)
    return path, read_set(path)


def check(settings: JobsSettings, *, needs: bool) -> None:
    """Refuse a target that `needs` the connector when the served set has none and no registry version is
    served. Where the API cannot read the set (workers elsewhere), the worker's editor decides."""
    if not needs or settings.connector_version is not None:
        return
    try:
        path, manifest = served(settings)
    except ModelLoadError:
        return
    if "connector" not in manifest.models:
        refusal = no_connector(path.name, manifest.backbone)
        raise RequestError(refusal.code, str(refusal))

"""The worker process's editor: models load once and stay warm, shared by the jobs of its threads.

A worker serving the registry's `latest` connector looks again at every job and switches when a
newer version has been published; jobs already running keep the connector they started with.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from cmet_core.modelsets.registry import LATEST, choose
from cmet_core.networks.errors import ModelLoadError
from cmet_jobs.settings import BatchedModel, JobsSettings
from worker import metrics

if TYPE_CHECKING:
    from cmet_core.edit.pipeline import Editor

log = logging.getLogger(__name__)


class WorkerEditor:
    """Holds this process's one `Editor`, built on first use under a lock (jobs start in several threads)."""

    def __init__(self) -> None:
        self._editor: Editor | None = None
        self._lock = threading.Lock()

    def get(self, settings: JobsSettings) -> Editor:
        with self._lock:
            if self._editor is None:
                self._editor = _load(settings)
            elif settings.connector_version == LATEST:
                _follow_latest(self._editor)
            return self._editor


def _load(settings: JobsSettings) -> Editor:
    # deferred: PIL, torch
    from cmet_core.edit.pipeline import Editor
    from worker.batcher import BatchPolicy, WorkerBatching

    def policy(model: BatchedModel) -> BatchPolicy:
        return BatchPolicy(*settings.batching(model))

    def observe(model: str, rows: int) -> None:
        metrics.BATCH.labels(model=model).observe(rows)

    with metrics.MODEL_LOAD.time():
        # jobs running in this process's threads share the models; their frames share forwards
        editor = Editor.from_settings(settings, models=settings.models_set, batching=WorkerBatching(policy, observe))
    metrics.record_gpu_memory()
    log.info("models loaded; serving connector %s", editor.connector_label)
    return editor


def _follow_latest(editor: Editor) -> None:
    try:
        choice = choose(LATEST, backbone=editor.models.backbone)
    except ModelLoadError:  # registry unreachable or emptied: keep serving what is loaded
        log.warning("cannot look up the latest connector; keeping %s", editor.connector_label, exc_info=True)
        return
    current = editor.models.connector_choice
    assert choice is not None  # a selection always resolves or raises
    if current is None or current.version != choice.version:
        with metrics.MODEL_LOAD.time():
            editor.use_connector(choice)
        log.info("now serving connector %s", editor.connector_label)


EDITOR = WorkerEditor()

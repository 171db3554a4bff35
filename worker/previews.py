"""A contact sheet's work inside the edit task: render the grid and the single images, store them under the job.

The cells go to storage before the grid: a record whose `output_key` (the grid) is set has all its cells.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cmet_core.emotion.library import EmotionLibrary
from cmet_jobs import jobs
from cmet_jobs.results import SheetCell, SheetResult
from cmet_jobs.settings import JobsSettings
from cmet_jobs.spec import SheetSpec, run_options
from cmet_jobs.storage import Storage
from worker.editor import EDITOR

if TYPE_CHECKING:
    from worker.guards import Progress


def render_sheet(
    settings: JobsSettings,
    storage: Storage,
    job_id: str,
    spec: SheetSpec,
    video: Path,
    library: EmotionLibrary,
    work: Path,
    progress: Progress,
) -> tuple[SheetResult, str]:
    """(the job's result, the grid's storage key)."""
    from cmet_core.edit.preview import contact_sheet  # deferred: torch (only where jobs run, never in a webhook worker)

    choices, limits = run_options(spec, settings)
    sheet = contact_sheet(EDITOR.get(settings), video, spec, choices, library, progress, limits)
    progress.still_held()  # a run that lost the job stores nothing over the new run's images
    cells = []
    for cell, path in zip(sheet.cells, sheet.save_cells(work / jobs.CELLS_FOLDER), strict=True):
        key = jobs.cell_key(job_id, path.name)
        storage.put_file(key, path, "image/png")
        cells.append(SheetCell(emotion=cell.emotion, intensity=cell.intensity, key=key))
    grid = jobs.job_prefix(job_id) + jobs.SHEET_NAME
    storage.put_file(grid, sheet.save(work / jobs.SHEET_NAME), "image/png")
    seconds = {stage.value: round(s, 3) for stage, s in sheet.stage_seconds.items()}
    return SheetResult(frame=sheet.frame, source_frame=sheet.source_frame, cells=cells, seconds=seconds), grid

"""Stage names are one enum (`cmet_core.stages.Stage`): the progress guard maps every member, in order."""

from __future__ import annotations

from cmet_core.edit.pipeline import STAGES
from cmet_core.stages import Stage
from worker.guards import STAGE_SPAN


def test_every_stage_moves_progress_through_its_own_share_in_order() -> None:
    assert list(STAGE_SPAN) == list(Stage)
    spans = [STAGE_SPAN[stage] for stage in Stage]
    assert all(0.0 <= lo <= hi < 1.0 for lo, hi in spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), "progress never goes back"
    assert list(STAGES) == [s for s in Stage if s in STAGES]  # an edit's stages, in the enum's order

"""Every input frame gets an edited expression, whatever the clip's length or frame rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmet_core.edit.expression import expression_track
from cmet_core.networks.connector import TINY_CONNECTOR, Connector, run_windows


@pytest.fixture(scope="module")
def connector() -> Connector:
    torch.manual_seed(0)
    return Connector(TINY_CONNECTOR).eval()


@pytest.mark.parametrize(("frames", "fps"), [(1, 25), (4, 25), (7, 25), (21, 25), (13, 30), (40, 24), (9, 60)])
@torch.no_grad()
def test_every_frame_gets_an_expression(connector: Connector, frames: int, fps: float) -> None:
    ed = torch.randn(frames, 10)
    out = expression_track(connector, ed, np.arange(frames) / fps, torch.randn(1, 1, TINY_CONNECTOR.speech_dim))
    assert out.shape == (frames, 10)
    assert torch.isfinite(out).all()


@torch.no_grad()
def test_25fps_whole_windows_equal_the_published_loop(connector: Connector) -> None:
    ed, speech = torch.randn(20, 10), torch.randn(1, 1, TINY_CONNECTOR.speech_dim)
    pred, _ = run_windows(connector, ed, speech)
    torch.testing.assert_close(expression_track(connector, ed, np.arange(20) / 25, speech), pred)


@torch.no_grad()
def test_timestamps_must_match_frames(connector: Connector) -> None:
    with pytest.raises(ValueError, match="one timestamp per frame"):
        expression_track(connector, torch.randn(3, 10), np.arange(4) / 25, torch.randn(1, 1, TINY_CONNECTOR.speech_dim))

"""The published inference schedule of the connector (C-MET's `inference.py`), kept only to prove
conformance: edits run `cmet_core.edit.expression.expression_track` instead."""

from __future__ import annotations

import torch

from cmet_core.networks.connector import Connector, run_windows


def official_schedule(
    connector: Connector, ed_neu: torch.Tensor, speech: torch.Tensor, lip_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The published inference.py schedule (§7.2 steps 3-7), kept to prove conformance.

    Drops frames past a multiple of the window, drops the last 20 predictions and ping-pong
    extends to `lip_len`. It hangs in the original for clips of 20 frames or fewer; here that
    case raises instead. Returns (loop predictions, one row per rendered frame).
    """
    t = connector.cfg.window
    n = ed_neu.shape[0] - ed_neu.shape[0] % t
    pred, _ = run_windows(connector, ed_neu[:n], speech)
    exp = pred[:-20]
    if exp.shape[0] == 0:
        raise ValueError(f"the published schedule needs more than 20 usable frames, got {n}")
    while exp.shape[0] < lip_len:
        exp = torch.cat([exp, exp.flip(0)])
    return pred, exp[:lip_len]

"""Small training configurations for tests: seconds, not minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.config import TrainConfig, validate_config

# the tiny model set's connector (TINY_CONNECTOR), so a trained version fits the tiny set
TINY_CONNECTOR = {"hidden": 64, "layers": 2, "heads": 2, "ffn": 64, "dropout": 0.1, "max_positions": 16}


def tiny_config(features: Path | None = None, **sections: Any) -> TrainConfig:
    data: dict[str, Any] = {
        "name": "test-connector",
        "batch": 8,
        "log_every": 1,
        "data": {"layout": "synthetic", "synthetic": {"features": str(features)} if features else {}},
        "model": {"connector": TINY_CONNECTOR},
        "optim": {"lr": 1e-3},
        "schedule": {"steps": 12, "warmup_steps": 2},
        "eval": {"every": 6, "pairs": 32},
        "checkpoint": {"every": 4, "keep": 5},
    }
    for name, value in sections.items():
        data[name] = {**data[name], **value} if isinstance(value, dict) and isinstance(data.get(name), dict) else value
    return validate_config(data, "test config")

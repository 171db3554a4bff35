"""The trainer: exact resume after an interruption, checkpoints and logs, configuration errors."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training.helpers import tiny_config
from training.config import ConfigError, load_config
from training.sources import open_source
from training.trainer import Trainer, TrainError


def _curve(run: Path) -> list[tuple[str, str, str, str]]:
    with (run / "metrics.csv").open(newline="") as f:
        return [tuple(r) for r in csv.reader(f)][1:]  # type: ignore[misc]


def test_resume_reproduces_the_uninterrupted_loss_curve(test_data: Path, tmp_path: Path) -> None:
    """Kill after step 6 (last checkpoint at 4), resume: the curve and the weights equal a run that never stopped."""
    torch.set_num_threads(1)
    cfg = tiny_config(test_data / "e2v")
    whole = Trainer(cfg, open_source(cfg), tmp_path / "whole").train()

    Trainer(cfg, open_source(cfg), tmp_path / "cut").train(until=6)  # steps 5 and 6 are lost with the process
    assert [p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()] == ["step-00000004.pt"]
    again = Trainer(cfg, open_source(cfg), tmp_path / "cut")
    assert again.resume() and again.step == 4
    resumed = again.train()

    assert _curve(tmp_path / "cut") == _curve(tmp_path / "whole")  # every logged loss and eval figure, bit for bit
    assert [v for s, v in resumed.losses] == [v for s, v in whole.losses][4:]
    for (name, a), b in zip(
        whole_state(tmp_path / "whole").items(), whole_state(tmp_path / "cut").values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert set(resumed.metrics) >= {
        "held_out/recon_l1",
        "held_out/direction_cos",
        "held_out/centroid_acc",
        "unseen/emotion_cos/gemini/sarcastic",
    }


def whole_state(run: Path) -> dict[str, torch.Tensor]:
    newest = sorted((run / "checkpoints").glob("*.pt"))[-1]
    return torch.load(newest, weights_only=True)["model"]


def test_a_run_refuses_another_config_and_foreign_checkpoints(test_data: Path, tmp_path: Path) -> None:
    cfg = tiny_config(test_data / "e2v", schedule={"steps": 4, "warmup_steps": 0})
    Trainer(cfg, open_source(cfg), tmp_path / "run").train()
    other = tiny_config(test_data / "e2v", schedule={"steps": 4, "warmup_steps": 0}, optim={"lr": 5e-4})
    with pytest.raises(TrainError, match="another configuration"):
        Trainer(other, open_source(other), tmp_path / "run").train()
    (tmp_path / "run" / "checkpoints" / "step-00000004.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainError, match="cannot be read"):
        Trainer(cfg, open_source(cfg), tmp_path / "run").resume()


def test_shipped_configs_validate_and_errors_name_the_field(tmp_path: Path) -> None:
    for name in ("mead", "crema-d", "synthetic", "synthetic-ci"):
        assert load_config(name, ["data.root=/data"] if name in ("mead", "crema-d") else []).name
    cfg = load_config("synthetic", ["schedule.steps=7", "loss.directional=0"])
    assert cfg.schedule.steps == 7 and cfg.loss.directional == 0
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config("synthetic", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="data.teacher_forcing"):
        load_config("synthetic", ["data.teacher_forcing=0"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nlayout=")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(bad)
    with pytest.raises(ConfigError, match="shipped configs"):
        load_config("no-such-config")


def test_cli_reports_bad_config_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.cli",
            "train",
            "--run",
            str(tmp_path / "r"),
            "--config",
            "synthetic",
            "--set",
            "optim.lr=-1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: config") and "optim.lr" in proc.stderr and "Traceback" not in proc.stderr


def test_autocast_choice_and_a_forced_bf16_run_on_the_cpu(test_data: Path, tmp_path: Path) -> None:
    """bf16 autocast, the default on CUDA, runs the same loop; on the CPU it is off unless forced.
    (No CUDA device here: the CUDA choice is checked as a decision, not run.)"""
    from training.trainer import autocast_dtype

    cpu = torch.device("cpu")
    assert (
        autocast_dtype("auto", cpu) is None
        and autocast_dtype("off", cpu) is None
        and autocast_dtype("bf16", cpu) is torch.bfloat16
    )
    cfg = tiny_config(
        test_data / "e2v",
        amp="bf16",
        device="cpu",
        schedule={"steps": 3, "warmup_steps": 0},
        eval={"every": 3, "pairs": 16},
    )
    result = Trainer(cfg, open_source(cfg), tmp_path / "run").train()
    assert all(loss == loss and abs(loss) < 1e3 for _, loss in result.losses)  # finite


def test_cli_run_killed_mid_training_resumes_to_the_same_curve(test_data: Path, tmp_path: Path) -> None:
    """`cmet-train train` as a user runs it: SIGKILL after a checkpoint, the same command again
    finishes the run, and its log equals an uninterrupted run's (one CPU thread on both sides)."""
    import json
    import os
    import signal
    import time

    cfg = tiny_config(
        test_data / "e2v",
        schedule={"steps": 40, "warmup_steps": 2},
        eval={"every": 20, "pairs": 16},
        checkpoint={"every": 10, "keep": 2},
    )
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_data()))
    cmd = [
        sys.executable,
        "-m",
        "training.cli",
        "train",
        "--run",
        str(tmp_path / "cli"),
        "--config",
        str(tmp_path / "cfg.json"),
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "cli" / "checkpoints" / "step-00000020.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resumed at step" in again.stdout and "trained 40 steps" in again.stdout

    torch.set_num_threads(1)
    Trainer(cfg, open_source(cfg), tmp_path / "whole").train()
    assert _curve(tmp_path / "cli") == _curve(tmp_path / "whole")

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "training.cli", *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "held_out/direction_cos" in cli("evaluate", str(tmp_path / "cli"))
    registry = str(tmp_path / "registry")
    assert "published test-connector 0.1.0" in cli("export", str(tmp_path / "cli"), "--registry", registry)
    assert "latest -> 0.1.0" in cli("registry", "--registry", registry)

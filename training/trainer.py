"""The training loop: seeded, autocast on CUDA, gradient clipping, periodic evaluation, checkpoints
with exact resume, a CSV log and a progress bar.

A run lives in one folder::

    RUN/config.json               the validated configuration (a resumed run must match it)
    RUN/metrics.csv               step,split,metric,value: training losses and evaluations
    RUN/checkpoints/step-NNNNNNNN.pt

A checkpoint holds everything the next step depends on: model and contrastive module, optimiser,
scheduler, gradient scaler and the global RNG states (dropout). Batches are a pure function of
(seed, step) (see `training.data`), so the data position is the step itself. Resuming truncates
the log to the checkpoint's step and continues; on the CPU the resumed curve equals the
uninterrupted one exactly.

CSV rather than TensorBoard: any tool reads it, it needs no extra dependency, and the run folder
stays a plain record of what happened.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from training.config import TrainConfig, validate_config
from training.data import PairSource
from training.evaluate import evaluate
from training.model import TrainModel, step_losses

STATE_FORMAT = "cmet-train-state/1"


class TrainError(RuntimeError):
    """A run that cannot start or resume as asked; the message says why."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "auto" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def lr_factor(cfg: TrainConfig) -> Callable[[int], float]:
    s = cfg.schedule

    def factor(step: int) -> float:
        if s.warmup_steps and step < s.warmup_steps:
            return (step + 1) / s.warmup_steps
        if s.kind == "constant":
            return 1.0
        span = max(1, s.steps - s.warmup_steps)
        progress = min(1.0, (step - s.warmup_steps) / span)
        return s.final_lr_ratio + (1 - s.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@dataclass
class RunResult:
    run_dir: Path
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    losses: list[tuple[int, float]] = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        source: PairSource,
        run_dir: Path,
        *,
        progress: bool = False,
        init_state: dict[str, torch.Tensor] | None = None,
        parent: str | None = None,
    ) -> None:
        self.cfg, self.source, self.run_dir, self.progress = cfg, source, Path(run_dir), progress
        self.device = pick_device(cfg.device)
        self.dtype = autocast_dtype(cfg.amp, self.device)
        torch.manual_seed(cfg.seed)
        self.model = TrainModel(cfg).to(self.device)
        if init_state is not None:
            self.model.connector.load_state_dict(init_state, strict=True)
        self.parent = parent
        params = [p for p in self.model.parameters() if p.requires_grad]
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(cfg))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.step = 0
        self.last_eval: dict[str, float] = {}
        self._reference = source.reference_batch(cfg.eval.pairs)
        self._eval = source.eval_batches(cfg.eval.pairs)

    # -- files ----------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def _write_config(self) -> None:
        path = self.run_dir / "config.json"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        record = {"config": self.cfg.to_data(), "data_fingerprint": self.source.fingerprint, "parent": self.parent}
        if path.exists():
            old = json.loads(path.read_text())
            if old["config"] != record["config"] or old["data_fingerprint"] != record["data_fingerprint"]:
                raise TrainError(f"{self.run_dir} holds a run with another configuration or data; use a new run folder")
            return
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

    def _log(self, rows: list[tuple[int, str, str, float]]) -> None:
        path = self.run_dir / "metrics.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "split", "metric", "value"])
            writer.writerows((step, split, name, repr(float(value))) for step, split, name, value in rows)

    def _truncate_log(self, step: int) -> None:
        path = self.run_dir / "metrics.csv"
        if not path.exists():
            return
        with path.open(newline="") as f:
            rows = [r for r in csv.reader(f)]
        kept = [rows[0]] + [r for r in rows[1:] if int(r[0]) <= step]
        with path.open("w", newline="") as f:
            csv.writer(f).writerows(kept)

    def checkpoints(self) -> list[Path]:
        return sorted(self.checkpoint_dir.glob("step-*.pt"))

    def save(self) -> Path:
        state = {
            "format": STATE_FORMAT,
            "step": self.step,
            "config_digest": self.cfg.digest(),
            "data_fingerprint": self.source.fingerprint,
            "parent": self.parent,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "last_eval": self.last_eval,
        }
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"step-{self.step:08d}.pt"
        tmp = path.with_suffix(".pt.partial")
        torch.save(state, tmp)
        os.replace(tmp, path)
        for old in self.checkpoints()[: -self.cfg.checkpoint.keep]:
            old.unlink(missing_ok=True)
        return path

    def load(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for truncated or foreign files
            raise TrainError(f"checkpoint {path} cannot be read: {str(exc).splitlines()[0][:200]}") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise TrainError(f"{path} is not a training checkpoint of this project")
        if state["config_digest"] != self.cfg.digest() or state["data_fingerprint"] != self.source.fingerprint:
            raise TrainError(f"{path} was written by a run with another configuration or data")
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.step, self.parent, self.last_eval = int(state["step"]), state["parent"], dict(state["last_eval"])

    def resume(self) -> bool:
        """Continue from the newest checkpoint in the run folder, if there is one."""
        found = self.checkpoints()
        if not found:
            return False
        self.load(found[-1])
        self._truncate_log(self.step)
        return True

    # -- the loop -------------------------------------------------------------------------
    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def evaluate(self) -> dict[str, float]:
        with self._autocast():
            metrics = evaluate(self.model, self._eval, self._reference, self.cfg.loss, self.device)
        self.last_eval = metrics
        self._log([(self.step, "eval", name, value) for name, value in sorted(metrics.items())])
        return metrics

    def train(self, until: int | None = None) -> RunResult:
        """Train to `schedule.steps` (or stop early at `until`, as an interruption would)."""

        self._write_config()
        cfg, result = self.cfg, RunResult(self.run_dir, self.step)
        end = min(cfg.schedule.steps, until) if until is not None else cfg.schedule.steps
        bar = tqdm(total=cfg.schedule.steps, initial=self.step, disable=not self.progress, desc=cfg.name, unit="step")
        self.model.train()
        while self.step < end:
            batch = self.source.train_batch(self.step, cfg.batch).to(self.device)
            with self._autocast():
                losses = step_losses(self.model, batch, cfg.loss)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(losses.total).backward()
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            scalars = losses.scalars()
            result.losses.append((self.step, scalars["loss"]))
            if self.step % cfg.log_every == 0 or self.step == end:
                rows = [(self.step, "train", k, v) for k, v in scalars.items()]
                rows += [
                    (self.step, "train", "grad_norm", float(grad_norm)),
                    (self.step, "train", "lr", float(self.scheduler.get_last_lr()[0])),
                ]
                self._log(rows)
                bar.set_postfix(loss=f"{scalars['loss']:.4f}")
            if self.step % cfg.eval.every == 0 or self.step == cfg.schedule.steps:
                self.model.eval()
                self.evaluate()
                self.model.train()
            if self.step % cfg.checkpoint.every == 0 or self.step == cfg.schedule.steps:
                self.save()
            bar.update(1)
        bar.close()
        self.model.eval()
        result.step, result.metrics = self.step, dict(self.last_eval)
        return result


def read_run(run_dir: Path) -> tuple[TrainConfig, str, str | None]:
    """The configuration, data fingerprint and parent a run folder was started with."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise TrainError(f"{run_dir} is not a training run (no config.json)")
    record = json.loads(path.read_text())
    return validate_config(record["config"], str(path)), record["data_fingerprint"], record.get("parent")


def final_state(run_dir: Path) -> dict[str, Any]:
    """The newest checkpoint of a run, for export."""
    found = sorted((Path(run_dir) / "checkpoints").glob("step-*.pt"))
    if not found:
        raise TrainError(f"{run_dir} has no checkpoint yet")
    return torch.load(found[-1], map_location="cpu", weights_only=True)

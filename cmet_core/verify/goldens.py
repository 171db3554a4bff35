"""Comparing our models with a conformance kit's goldens: groups of comparisons under one tolerance,
a filled model's digest, and the per-model run every kit's checks share (`conformance`, and each
backbone's own groups beside it)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from cmet_core.networks.connector import sinusoid_table
from cmet_core.verify.fill import ModelKind, fill_module, state_digest

Manifest = dict[str, Any]
M = TypeVar("M", bound=torch.nn.Module)


class KitError(ValueError):
    """The kit folder is missing a file or holds something unreadable."""


@dataclass
class GroupResult:
    name: str
    passed: bool
    max_abs: float
    detail: str

    def line(self) -> str:
        status = "ok  " if self.passed else "FAIL"
        return f"{status} {self.name:<28} max_abs={self.max_abs:.3e}  {self.detail}"


@dataclass
class Tolerance:
    atol: float = 0.0
    rtol: float = 0.0
    max_abs: float | None = None
    mean_abs: float | None = None


ROOT_TOLERANCES = "tolerances.json"
"""The kit root's tolerances, by group name under `recommended_tolerances`."""


class Goldens(dict[str, np.ndarray]):
    """A kit's golden arrays, remembering which keys were read (`g[key]`): `keys_read` then names the keys
    no group read, so a key the kit added, or one a group stopped reading, cannot go unchecked."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        super().__init__(arrays)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> np.ndarray:
        self.read.add(key)
        return super().__getitem__(key)


def load_goldens(path: Path) -> Goldens:
    with np.load(path) as arrays:
        return Goldens(dict(arrays))


def keys_read(name: str, golden: Goldens, unread: dict[str, str]) -> GroupResult:
    """Fails when a golden key that is not in `unread` (key: why no group reads it) was read by no group."""
    missed = sorted(set(golden) - golden.read - set(unread))
    if missed:
        return GroupResult(name, False, float("inf"), f"{len(missed)} golden keys read by no group: {missed}")
    stale = sorted(set(unread) - set(golden))
    if stale:
        return GroupResult(name, False, float("inf"), f"keys allowed unread but not in the kit: {stale[:8]}")
    return GroupResult(name, True, 0.0, f"{len(golden.read & set(golden))} of {len(golden)} keys read")


def read_kit_files(kit: Path, manifest: str, golden: str) -> tuple[Manifest, Goldens]:
    """A model's manifest (JSON) and golden arrays (npz) from the kit folder `kit`."""
    try:
        return json.loads((kit / manifest).read_text()), load_goldens(kit / golden)
    except (ValueError, KeyError, OSError) as exc:
        raise KitError(f"{kit}: unreadable kit file ({exc})") from exc


def root_tolerances(kit: Path) -> dict[str, Tolerance]:
    """The recommended tolerances of the kit root's `tolerances.json`, by name."""
    try:
        rec = json.loads((kit / ROOT_TOLERANCES).read_text())["recommended_tolerances"]
    except (ValueError, KeyError, OSError) as exc:
        raise KitError(f"{kit}: unreadable kit file ({exc})") from exc
    return {name: Tolerance(**{k: float(v) for k, v in spec.items()}) for name, spec in rec.items()}


class Group:
    """Collects comparisons of one group against one tolerance."""

    def __init__(self, name: str, tol: Tolerance) -> None:
        self.name, self.tol = name, tol
        self.max_abs = 0.0
        self.failures: list[str] = []
        self.per_key = False
        self.compared = 0

    def compare(self, key: str, ours: torch.Tensor | np.ndarray, ref: np.ndarray, tol: Tolerance | None = None) -> None:
        """`tol` overrides the group's tolerance for this one key (the mel stages each have their own)."""
        t = tol or self.tol
        self.per_key |= tol is not None
        self.compared += 1
        a = ours.detach().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
        a = a.reshape(ref.shape) if a.size == ref.size else a
        if a.shape != ref.shape:
            self.failures.append(f"{key}: shape {a.shape} != {ref.shape}")
            self.max_abs = float("inf")
            return
        diff = np.abs(a.astype(np.float64) - ref.astype(np.float64))
        worst = float(diff.max()) if diff.size else 0.0
        self.max_abs = max(self.max_abs, worst)
        if t.max_abs is not None:
            mean = float(diff.mean())
            if worst > t.max_abs or mean > (t.mean_abs or np.inf):
                self.failures.append(f"{key}: max {worst:.2e} mean {mean:.2e}")
        elif np.any(diff > t.atol + t.rtol * np.abs(ref.astype(np.float64))):
            self.failures.append(f"{key}: max {worst:.2e}")

    def result(self) -> GroupResult:
        """A group that compared nothing fails: a golden key it meant to read was renamed or filtered away,
        and a pass would claim a conformance nobody checked."""
        if self.compared == 0:
            return GroupResult(self.name, False, float("inf"), "compared nothing")
        if self.failures:
            return GroupResult(self.name, False, self.max_abs, "; ".join(self.failures[:3]))
        t = self.tol
        if t.max_abs is not None:
            limit = f"max<={t.max_abs:g} mean<={t.mean_abs:g}"
        else:
            limit = f"atol={t.atol:g} rtol={t.rtol:g}" + (" (and the kit's per-stage limits)" if self.per_key else "")
        return GroupResult(self.name, True, self.max_abs, limit)


def u8_group(name: str, ours: np.ndarray, ref: np.ndarray, max_abs: float, max_frac: float) -> GroupResult:
    """uint8 images: every value within `max_abs` levels, and at most `max_frac` of them differing at all."""
    a = np.asarray(ours)
    if a.shape != ref.shape:
        return GroupResult(name, False, float("inf"), f"shape {a.shape} != {ref.shape}")
    diff = np.abs(a.astype(np.int64) - ref.astype(np.int64))
    worst, frac = float(diff.max()), float((diff > 0).mean())
    ok = worst <= max_abs and frac <= max_frac
    return GroupResult(name, ok, worst, f"{frac:.2e} of values differ (max<={max_abs:g}, frac<={max_frac:g})")


def frames_tensor(u8: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,3) RGB -> float (N,3,H,W) in [-1,1], the published preprocessing order."""
    x = torch.from_numpy(np.ascontiguousarray(u8)).permute(0, 3, 1, 2).float() / 255.0
    return ((x - 0.5) * 2.0).contiguous()


def digest_group(name: str, module: torch.nn.Module, manifest: Manifest, exclude_pe: bool) -> GroupResult:
    sd = module.state_dict()
    mkeys = {k["key"]: k for k in manifest["keys"]}
    if set(sd) != set(mkeys):
        return GroupResult(name, False, float("inf"), f"key sets differ: {len(set(sd) ^ set(mkeys))} keys")
    bad = [k for k in sd if list(sd[k].shape) != mkeys[k]["shape"]]
    if bad:
        return GroupResult(name, False, float("inf"), f"shapes differ: {bad[:3]}")
    if exclude_pe:
        pe_keys = [k for k in sd if k.endswith(".pe")]
        ok = state_digest(sd, pe_keys) == manifest["filled_state_dict_sha256_without_pe"]
        ref = sinusoid_table(*sd[pe_keys[0]].shape[1:])
        pe_err = max(float((sd[k] - ref).abs().max()) for k in pe_keys)
        full = state_digest(sd) == manifest["filled_state_dict_sha256"]
        detail = (
            f"sha256 without pe {'matches' if ok else 'DIFFERS'}; pe by value <=1e-6; "
            f"full digest {'matches' if full else 'differs (CPU-dependent pe bits)'}"
        )
        return GroupResult(name, ok and pe_err <= 1e-6, pe_err, detail)
    ok = state_digest(sd) == manifest["filled_state_dict_sha256"]
    return GroupResult(name, ok, 0.0, f"sha256 {'matches' if ok else 'DIFFERS'} ({len(sd)} keys)")


def guarded(name: str, groups: Callable[[], Iterator[GroupResult]]) -> Iterator[GroupResult]:
    """A missing golden key or a crash inside one model's checks is a failed group, not a traceback."""
    try:
        yield from groups()
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        yield GroupResult(name, False, float("inf"), f"{type(exc).__name__}: {exc}")


def model_checks(
    name: ModelKind, module: M, manifest: Manifest, groups: Callable[[M], Iterator[GroupResult]], exclude_pe: bool
) -> Iterator[GroupResult]:
    """Fill one model by the rule, check its digest, then its golden groups; the model is freed after."""
    fill_module(module, name)
    digest = f"{name}.filled_digest"
    yield from guarded(digest, lambda: iter([digest_group(digest, module, manifest, exclude_pe)]))
    yield from guarded(name, lambda: groups(module))

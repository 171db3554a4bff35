"""Golden checks behind `cmet conformance --kit DIR`: our modules, rule-filled, against the original's outputs.

A kit is a folder in the format of `shared/conformance/`: two manifests, two golden npz files and
`tolerances.json` with its `recommended_tolerances`. Every group is one line of the report.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from cmet_core.expression import official_schedule
from cmet_core.fill import ModelKind, fill_module, state_digest
from cmet_core.models.connector import Connector, run_windows, sinusoid_table
from cmet_core.models.edtalk import Generator
from cmet_core.models.gfpgan import GFPGAN, face_to_tensor, restore_face

KIT_FILES = (
    "edtalk_gen_manifest.json",
    "cmet_connector_manifest.json",
    "golden_edtalk.npz",
    "golden_connector.npz",
    "tolerances.json",
)


Manifest = dict[str, Any]
_M = TypeVar("_M", bound=torch.nn.Module)


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


class _Group:
    """Collects comparisons of one group against one tolerance."""

    def __init__(self, name: str, tol: Tolerance) -> None:
        self.name, self.tol = name, tol
        self.max_abs = 0.0
        self.failures: list[str] = []

    def compare(self, key: str, ours: torch.Tensor | np.ndarray, ref: np.ndarray) -> None:
        a = ours.detach().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
        a = a.reshape(ref.shape) if a.size == ref.size else a
        if a.shape != ref.shape:
            self.failures.append(f"{key}: shape {a.shape} != {ref.shape}")
            self.max_abs = float("inf")
            return
        diff = np.abs(a.astype(np.float64) - ref.astype(np.float64))
        worst = float(diff.max()) if diff.size else 0.0
        self.max_abs = max(self.max_abs, worst)
        if self.tol.max_abs is not None:
            mean = float(diff.mean())
            if worst > self.tol.max_abs or mean > (self.tol.mean_abs or np.inf):
                self.failures.append(f"{key}: max {worst:.2e} mean {mean:.2e}")
        elif np.any(diff > self.tol.atol + self.tol.rtol * np.abs(ref)):
            self.failures.append(f"{key}: max {worst:.2e}")

    def result(self) -> GroupResult:
        if self.failures:
            return GroupResult(self.name, False, self.max_abs, "; ".join(self.failures[:3]))
        t = self.tol
        if t.max_abs is not None:
            limit = f"max<={t.max_abs:g} mean<={t.mean_abs:g}"
        else:
            limit = f"atol={t.atol:g} rtol={t.rtol:g}"
        return GroupResult(self.name, True, self.max_abs, limit)


def _load_kit(
    kit: Path,
) -> tuple[Manifest, Manifest, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Tolerance]]:
    missing = [f for f in KIT_FILES if not (kit / f).is_file()]
    if missing:
        raise KitError(f"{kit}: not a conformance kit, missing {', '.join(missing)}")
    try:
        edm = json.loads((kit / KIT_FILES[0]).read_text())
        cnm = json.loads((kit / KIT_FILES[1]).read_text())
        ge = dict(np.load(kit / KIT_FILES[2]))
        gc = dict(np.load(kit / KIT_FILES[3]))
        rec = json.loads((kit / KIT_FILES[4]).read_text())["recommended_tolerances"]
    except (ValueError, KeyError, OSError) as exc:
        raise KitError(f"{kit}: unreadable kit file ({exc})") from exc
    tols = {name: Tolerance(**{k: float(v) for k, v in spec.items()}) for name, spec in rec.items()}
    return edm, cnm, ge, gc, tols


def _frames(u8: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,3) RGB -> float (N,3,H,W) in [-1,1], the published preprocessing order."""
    x = torch.from_numpy(np.ascontiguousarray(u8)).permute(0, 3, 1, 2).float() / 255.0
    return ((x - 0.5) * 2.0).contiguous()


def _digest_group(name: str, module: torch.nn.Module, manifest: Manifest, exclude_pe: bool) -> GroupResult:
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


def _edtalk_groups(gen: Generator, g: dict[str, np.ndarray], tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    frames = _frames(g["frames_u8"])
    source = _frames(g["source_u8"][None])
    exp_vec = torch.from_numpy(g["exp_vec"])

    grp = _Group("edtalk.alphas_latents", tols["alpha_and_latents"])
    wa, _ = gen.encode(frames)
    motion = gen.motion(wa)
    exp, pose, lip = gen.compute_alpha_D(frames)
    for key, val in (
        ("alpha_exp", exp),
        ("alpha_pose", pose),
        ("alpha_lip", lip),
        ("frames_enc_wa", wa),
        ("frames_fc_shared", gen.fc(wa)),
    ):
        grp.compare(key, val, g[key])
    src = gen.prepare_source(source)
    grp.compare("src_wa", src.wa, g["src_wa"])
    yield grp.result()

    grp = _Group("edtalk.source_features", tols["debug_maps"])
    for level, feat in enumerate(src.feats):
        grp.compare(f"src_feat{level}_chmean", feat[0].mean(dim=(1, 2)), g[f"src_feat{level}_chmean"])
        grp.compare(f"src_feat{level}_spmean", feat[0].mean(dim=0), g[f"src_feat{level}_spmean"])
    grp.compare("src_feat0_full", src.feats[0][0], g["src_feat0_full"])
    yield grp.result()

    q, r = gen.direction_qr()
    grp = _Group("edtalk.dir_Q", tols["dir_Q"])
    grp.compare("dir_Q", q, g["dir_Q"])
    yield grp.result()
    grp = _Group("edtalk.dir_R", tols["dir_R"])
    grp.compare("dir_R", r, g["dir_R"])
    yield grp.result()

    idx = g["render_lip_pose_idx"]
    lip_i, pose_i = torch.from_numpy(idx[:, 0]), torch.from_numpy(idx[:, 1])
    v_lip, v_pose = motion.lip[lip_i], motion.pose[pose_i]
    exp_rows = exp_vec.expand(len(idx), -1)
    grp = _Group("edtalk.v_internals", tols["alpha_and_latents"])
    latent, e = gen.latents(src.wa, v_lip, v_pose, exp_rows)
    alpha_d = torch.cat([v_lip, v_pose, exp_rows], -1)
    for key, val in (
        ("v_lip_wa", wa[lip_i]),
        ("v_pose_wa", wa[pose_i]),
        ("v_alpha_lip", v_lip),
        ("v_alpha_pose", v_pose),
        ("v_alpha_D", alpha_d),
        ("v_e", e),
        ("v_dirD", latent - src.wa),
        ("v_latent", latent),
    ):
        grp.compare(key, val, g[key])
    yield grp.result()

    trace: dict[str, torch.Tensor] = {}
    fast0 = gen.render(src, v_lip[:1], v_pose[:1], exp_rows[:1], trace=trace)
    grp = _Group("edtalk.v_render0_levels", tols["debug_maps"])
    for key in g:
        if key.startswith("v0_"):
            grp.compare(key, trace[key[3:]][0], g[key])
    yield grp.result()

    grp = _Group("edtalk.v_img.reference", tols["images"])
    for i, (li, pi) in enumerate(idx):
        img = gen.render_reference(source, frames[li : li + 1], frames[pi : pi + 1], exp_vec)
        grp.compare(f"v_img[{i}]", img[0], g["v_img"][i])
    yield grp.result()

    grp = _Group("edtalk.v_img.fast_batched", tols["images"])
    grp.compare("v_img[0] (batch 1)", fast0[0], g["v_img"][0])
    grp.compare("v_img (batch 2)", gen.render(src, v_lip, v_pose, exp_rows), g["v_img"])
    yield grp.result()

    grp = _Group("edtalk.av_img", tols["images"])
    av_pose = motion.pose[int(g["av_pose_frame_idx"])][None]
    grp.compare("av_img", gen.render(src, torch.from_numpy(g["av_lip_alpha"]), av_pose, exp_vec), g["av_img"])
    yield grp.result()
    grp = _Group("edtalk.av_internals", tols["alpha_and_latents"])
    grp.compare("av_alpha_pose", av_pose, g["av_alpha_pose"])
    yield grp.result()


def _connector_groups(con: Connector, g: dict[str, np.ndarray], tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    t = {k: torch.from_numpy(v) for k, v in g.items() if v.dtype.kind == "f"}

    grp = _Group("connector.single", tols["connector_single_batch"])
    out = con.run(t["single_ref"], t["single_e2v"], t["single_ed_neu"])
    for key, val in (
        ("single_out", out.delta),
        ("single_ref_emb", out.ref_emb),
        ("single_e2v_emb", out.speech_emb),
        ("single_ed_neu_emb", out.exp_emb),
        ("single_tokens_in", out.tokens_in),
        ("single_tokens_out", out.tokens_out),
    ):
        grp.compare(key, val, g[key])
    yield grp.result()

    grp = _Group("connector.batch", tols["connector_single_batch"])
    grp.compare("batch_out", con(t["batch_ref"], t["batch_e2v"], t["batch_ed_neu"]), g["batch_out"])
    yield grp.result()

    grp = _Group("connector.loop", tols["connector_loop_schedule"])
    for prefix, e2v in (("loop", t["loop_e2v"]), ("loop_real", t["real_e2v"])):
        pred, delta = run_windows(con, t["loop_ed_neu"][0], e2v)
        grp.compare(f"{prefix}_pred_exp", pred, g[f"{prefix}_pred_exp"])
        grp.compare(f"{prefix}_pred_dir", delta, g[f"{prefix}_pred_dir"])
    yield grp.result()

    grp = _Group("connector.schedule", tols["connector_loop_schedule"])
    pred, per_frame = official_schedule(con, t["sched_ed_neu"][0], t["sched_e2v"], int(g["sched_lip_len"]))
    grp.compare("sched_pred_exp", pred, g["sched_pred_exp"])
    grp.compare("sched_exp_per_frame", per_frame, g["sched_exp_per_frame"])
    yield grp.result()


def _guarded(name: str, groups: Callable[[], Iterator[GroupResult]]) -> Iterator[GroupResult]:
    """A missing golden key or a crash inside one model's checks is a failed group, not a traceback."""
    try:
        yield from groups()
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        yield GroupResult(name, False, float("inf"), f"{type(exc).__name__}: {exc}")


@torch.no_grad()
def run_kit(kit: Path) -> Iterator[GroupResult]:
    """Build both models, fill them by the rule, check digests, then every golden group."""
    edm, cnm, ge, gc, tols = _load_kit(Path(kit))
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

    yield from _model_checks(
        "edtalk", Generator().eval(), edm, lambda gen: _edtalk_groups(gen, ge, tols), exclude_pe=False
    )
    yield from _model_checks(
        "connector", Connector().eval(), cnm, lambda con: _connector_groups(con, gc, tols), exclude_pe=True
    )
    if (Path(kit) / GFPGAN_DIR).is_dir():
        yield from run_gfpgan_kit(Path(kit) / GFPGAN_DIR)


def _model_checks(
    name: ModelKind, module: _M, manifest: Manifest, groups: Callable[[_M], Iterator[GroupResult]], exclude_pe: bool
) -> Iterator[GroupResult]:
    """Fill one model by the rule, check its digest, then its golden groups; the model is freed after."""
    fill_module(module, name)
    digest = f"{name}.filled_digest"
    yield from _guarded(digest, lambda: iter([_digest_group(digest, module, manifest, exclude_pe)]))
    yield from _guarded(name, lambda: groups(module))


def kit_fingerprint(kit: Path) -> str:
    """Short digest of the kit's files, printed so a report says which kit it checked."""
    h = hashlib.sha256()
    for name in KIT_FILES:
        path = Path(kit) / name
        if path.is_file():
            h.update(path.read_bytes())
    for name in GFPGAN_FILES:
        path = Path(kit) / GFPGAN_DIR / name
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


GFPGAN_DIR = "gfpgan"
GFPGAN_FILES = ("gfpgan_manifest.json", "golden_gfpgan.npz", "tolerances_gfpgan.json")


def _load_gfpgan_kit(kit: Path) -> tuple[Manifest, dict[str, np.ndarray], dict[str, Any]]:
    missing = [f for f in GFPGAN_FILES if not (kit / f).is_file()]
    if missing:
        raise KitError(f"{kit}: not a GFPGAN kit, missing {', '.join(missing)}")
    try:
        manifest = json.loads((kit / GFPGAN_FILES[0]).read_text())
        golden = dict(np.load(kit / GFPGAN_FILES[1]))
        rec = json.loads((kit / GFPGAN_FILES[2]).read_text())["recommended_tolerances"]
    except (ValueError, KeyError, OSError) as exc:
        raise KitError(f"{kit}: unreadable GFPGAN kit file ({exc})") from exc
    return manifest, golden, rec


def _u8_group(name: str, ours: list[np.ndarray], ref: np.ndarray, max_abs: float, max_frac: float) -> GroupResult:
    """uint8 faces: every value within `max_abs` levels, and at most `max_frac` of them differing at all."""
    diff = np.abs(np.stack(ours).astype(np.int64) - ref.astype(np.int64))
    worst, frac = float(diff.max()), float((diff > 0).mean())
    ok = worst <= max_abs and frac <= max_frac
    return GroupResult(name, ok, worst, f"{frac:.2e} of values differ (max<={max_abs:g}, frac<={max_frac:g})")


def _gfpgan_groups(net: GFPGAN, g: dict[str, np.ndarray], rec: dict[str, Any]) -> Iterator[GroupResult]:
    """One restore per stored face (batch 1, fixed noise), compared level by level."""
    faces = g["input_u8_512"]
    grp = _Group("gfpgan.net_input", Tolerance())
    for i, face in enumerate(faces):
        grp.compare(f"net_input[{i}]", face_to_tensor(face)[0], g["net_input"][i])
    yield grp.result()

    traces: list[dict[str, torch.Tensor]] = []
    restored: list[np.ndarray] = []
    for face in faces:
        trace: dict[str, torch.Tensor] = {}
        restored.append(restore_face(net, face, trace=trace))
        traces.append(trace)

    chm = rec["style_code_enc_sft_unet_dec_chmeans"]
    full = rec["enc_final_feat_and_dec_rgbskip_full"]
    levels = _Group("gfpgan.internals_per_level", Tolerance(atol=float(chm["atol"]), rtol=float(chm["rtol"])))
    maps = _Group("gfpgan.internals_full_maps", Tolerance(atol=float(full["atol"])))
    for key in sorted(g):
        if key.endswith("_chmean") or key == "style_code":
            group = levels
        elif key == "enc_final_feat" or (key.startswith("dec_rgbskip") and key.endswith("_full")):
            group = maps
        else:
            continue
        for i, trace in enumerate(traces):
            group.compare(f"{key}[{i}]", trace[key], g[key][i])
    yield levels.result()
    yield maps.result()

    out = rec["net_output"]
    grp = _Group("gfpgan.net_output", Tolerance(max_abs=float(out["max_abs"]), mean_abs=float(out["mean_abs"])))
    grp.compare("net_output", torch.stack([t["net_output"] for t in traces]), g["net_output"])
    yield grp.result()

    u8 = rec["restored_u8"]
    yield _u8_group(
        "gfpgan.restored_u8", restored, g["restored_u8"], float(u8["max_abs"]), float(u8["max_frac_differ"])
    )


@torch.no_grad()
def run_gfpgan_kit(kit: Path) -> Iterator[GroupResult]:
    """The GFPGAN v1.4 restorer (kit folder `gfpgan/`): digest, net input, internals, raw output, uint8 face."""
    manifest, golden, rec = _load_gfpgan_kit(Path(kit))
    yield from _model_checks(
        "gfpgan", GFPGAN().eval(), manifest, lambda net: _gfpgan_groups(net, golden, rec), exclude_pe=False
    )

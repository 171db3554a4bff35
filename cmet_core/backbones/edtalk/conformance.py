"""EDTalk's conformance groups (kit `SPEC.md`): the rule-filled generator's digest, then its encoder,
bases, internals and renders against `golden_edtalk.npz` at the kit's root. `cmet_core.verify.conformance`
collects them through the backbone's tools (`kit_checks`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from cmet_core.backbones.edtalk.network import Generator
from cmet_core.verify.goldens import (
    Goldens,
    Group,
    GroupResult,
    Manifest,
    Tolerance,
    frames_tensor,
    keys_read,
    model_checks,
    read_kit_files,
    root_tolerances,
)

MANIFEST, GOLDEN = "edtalk_gen_manifest.json", "golden_edtalk.npz"


def kit_checks(kit: Path) -> Iterator[GroupResult]:
    """EDTalk's groups of the kit at `kit` (its files lie at the root, beside the connector's)."""
    manifest, golden = read_kit_files(kit, MANIFEST, GOLDEN)
    yield from edtalk_checks(manifest, golden, root_tolerances(kit))


def edtalk_checks(manifest: Manifest, golden: Goldens, tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    """Fill the published-size generator by the rule, check its digest, then every golden group."""
    yield from model_checks(
        "edtalk", Generator().eval(), manifest, lambda gen: edtalk_groups(gen, golden, tols), exclude_pe=False
    )


def edtalk_groups(gen: Generator, g: Goldens, tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    frames = frames_tensor(g["frames_u8"])
    source = frames_tensor(g["source_u8"][None])
    exp_vec = torch.from_numpy(g["exp_vec"])

    grp = Group("edtalk.alphas_latents", tols["alpha_and_latents"])
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

    grp = Group("edtalk.source_features", tols["debug_maps"])
    for level, feat in enumerate(src.feats):
        grp.compare(f"src_feat{level}_chmean", feat[0].mean(dim=(1, 2)), g[f"src_feat{level}_chmean"])
        grp.compare(f"src_feat{level}_spmean", feat[0].mean(dim=0), g[f"src_feat{level}_spmean"])
    grp.compare("src_feat0_full", src.feats[0][0], g["src_feat0_full"])
    yield grp.result()

    q, r = gen.direction_qr()
    grp = Group("edtalk.dir_Q", tols["dir_Q"])
    grp.compare("dir_Q", q, g["dir_Q"])
    yield grp.result()
    grp = Group("edtalk.dir_R", tols["dir_R"])
    grp.compare("dir_R", r, g["dir_R"])
    yield grp.result()

    idx = g["render_lip_pose_idx"]
    lip_i, pose_i = torch.from_numpy(idx[:, 0]), torch.from_numpy(idx[:, 1])
    v_lip, v_pose = motion.lip[lip_i], motion.pose[pose_i]
    exp_rows = exp_vec.expand(len(idx), -1)
    grp = Group("edtalk.v_internals", tols["alpha_and_latents"])
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
    grp = Group("edtalk.v_render0_levels", tols["debug_maps"])
    for key in g:
        if key.startswith("v0_"):
            grp.compare(key, trace[key[3:]][0], g[key])
    yield grp.result()

    grp = Group("edtalk.v_img.reference", tols["images"])
    for i, (li, pi) in enumerate(idx):
        img = gen.render_reference(source, frames[li : li + 1], frames[pi : pi + 1], exp_vec)
        grp.compare(f"v_img[{i}]", img[0], g["v_img"][i])
    yield grp.result()

    grp = Group("edtalk.v_img.fast_batched", tols["images"])
    grp.compare("v_img[0] (batch 1)", fast0[0], g["v_img"][0])
    grp.compare("v_img (batch 2)", gen.render(src, v_lip, v_pose, exp_rows), g["v_img"])
    yield grp.result()

    grp = Group("edtalk.av_img", tols["images"])
    av_pose = motion.pose[int(g["av_pose_frame_idx"])][None]
    grp.compare("av_img", gen.render(src, torch.from_numpy(g["av_lip_alpha"]), av_pose, exp_vec), g["av_img"])
    yield grp.result()
    grp = Group("edtalk.av_internals", tols["alpha_and_latents"])
    grp.compare("av_alpha_pose", av_pose, g["av_alpha_pose"])
    yield grp.result()
    yield keys_read("edtalk.keys_read", g, UNREAD)


UNREAD: dict[str, str] = {
    "frames_fps": "the clip's frame rate: EDTalk's networks see single frames, no group depends on time",
}
"""Golden keys no EDTalk group reads, each with the reason (`keys_read` fails on any other)."""

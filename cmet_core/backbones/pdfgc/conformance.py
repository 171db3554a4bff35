"""PD-FGC's conformance groups (kit folder `pdfgc/`, SPEC_pdfgc.md): the rule-filled networks' digests,
then each network on its stored inputs, the audio front end, the C-MET edit of one render and the
original Tester's pipeline stages, against `golden_pdfgc.npz` at `tolerances_pdfgc.json`'s limits.
`cmet_core.verify.conformance` collects them through the backbone's tools (`kit_checks`); the groups run
easiest first, so a broken network shows before the renders that depend on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from cmet_core.backbones.pdfgc import frontend
from cmet_core.backbones.pdfgc.codes import EMO_GAIN, drive_rows, render_u8, style_codes
from cmet_core.backbones.pdfgc.network import PDFGC, images_tensor
from cmet_core.verify.fill import state_digest
from cmet_core.verify.goldens import (
    Goldens,
    Group,
    GroupResult,
    KitError,
    Manifest,
    Tolerance,
    keys_read,
    model_checks,
    read_kit_files,
    u8_group,
)

KIT_DIR = "pdfgc"
MANIFEST, GOLDEN, TOLERANCES = "pdfgc_manifest.json", "golden_pdfgc.npz", "tolerances_pdfgc.json"
KIT_FILES = (MANIFEST, GOLDEN, TOLERANCES)


def kit_checks(kit: Path) -> Iterator[GroupResult]:
    """PD-FGC's groups of the kit at `kit` (its files lie in `kit/pdfgc/`; nothing when that is absent)."""
    folder = Path(kit) / KIT_DIR
    if not folder.is_dir():
        return
    missing = [f for f in KIT_FILES if not (folder / f).is_file()]
    if missing:
        raise KitError(f"{folder}: not a PD-FGC kit, missing {', '.join(missing)}")
    manifest, golden = read_kit_files(folder, MANIFEST, GOLDEN)
    yield from pdfgc_checks(manifest, golden, read_tolerances(folder))


def read_tolerances(folder: Path) -> dict[str, Tolerance]:
    """The kit's recommended tolerances by group: `frontend`, `codes`, `internals`, `images`, `u8`
    (`u8`: `max_abs` levels and `mean_abs` = the fraction of values allowed to differ)."""
    try:
        rec = json.loads((folder / TOLERANCES).read_text())["recommended_tolerances"]
        by_start = {name.split(":")[0].split(" (")[0]: spec for name, spec in rec.items()}
        u8 = by_start["pipe_gen_u8"]
        return {
            "frontend": Tolerance(atol=float(by_start["audio front end"]["atol"])),
            "codes": Tolerance(atol=float(by_start["codes"]["atol"]), rtol=float(by_start["codes"]["rtol"])),
            "internals": Tolerance(atol=float(by_start["internals"]["atol"])),
            "images": Tolerance(
                max_abs=float(by_start["images"]["max_abs"]), mean_abs=float(by_start["images"]["mean_abs"])
            ),
            "u8": Tolerance(max_abs=float(u8["max_abs"]), mean_abs=float(u8["max_frac_differ"])),
        }
    except (ValueError, KeyError, OSError) as exc:
        raise KitError(f"{folder}: unreadable kit file ({exc})") from exc


def pdfgc_checks(manifest: Manifest, golden: Goldens, tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    """Fill the published-size networks by the rule, check the digests, then every golden group."""
    yield from model_checks(
        "pdfgc", PDFGC().eval(), manifest, lambda net: pdfgc_groups(net, manifest, golden, tols), exclude_pe=False
    )


def _chmean(t: torch.Tensor) -> torch.Tensor:
    """Mean over space in float64, as the kit stores its `*_chmean` keys."""
    return t.double().mean(dim=(-2, -1))


def pdfgc_groups(net: PDFGC, manifest: Manifest, g: Goldens, tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    yield _network_digests(net, manifest)
    yield _inputs(net, g)
    yield _frontend(g, tols["frontend"])
    yield from appearance_groups(net, g, tols)
    yield from motion_groups(net, g, tols)
    yield from audio_groups(net, g, tols)
    yield from generator_groups(net, g, tols)
    yield from edit_groups(net, g, tols)
    yield from pipeline_groups(net, g, tols)
    yield keys_read("pdfgc.keys_read", g, UNREAD)


UNREAD: dict[str, str] = {
    **{
        name: "provenance: the source files' names or digests; the groups read the pixels and samples stored"
        for name in (
            "src_files",
            "src_files_sha256",
            "frames_files",
            "frames_files_sha256",
            "pipe_frame_files",
            "pipe_frame_files_sha256",
            "files_sha256",
        )
    },
    "pipe_frame_loaded_u8_sha256": "digests for checking a loader that has the files; the kit's frames are read",
    "pipe_audio_slice": "where `pipe_wav_int16` was cut from the source WAV; the samples themselves are read",
    "filled_state_dict_sha256": "the manifest's digest again: `pdfgc.filled_digest` checks the manifest's",
    "pipe_batches": "the original's batch sizes (8, 2): outputs do not depend on batching; the frames are compared",
    "pipe_fps": "the frame rate behind `pipe_drive_index`, which `pdfgc.pipe_drive` compares",
}
"""Golden keys no PD-FGC group reads, each with the reason (`keys_read` fails on any other)."""


def _network_digests(net: PDFGC, manifest: Manifest) -> GroupResult:
    state = net.state_dict()
    differ = [
        name
        for name, info in manifest["per_network"].items()
        if state_digest({k: v for k, v in state.items() if k.startswith(name + ".")})
        != info["filled_state_dict_sha256"]
    ]
    detail = f"sha256 DIFFERS for {', '.join(differ)}" if differ else f"sha256 of {len(manifest['per_network'])} match"
    return GroupResult("pdfgc.network_digests", not differ, 0.0, detail)


def _delta(g: Goldens) -> torch.Tensor:
    """The kit's stand-in for a connector's output: 0.5 * randn(30) from a seeded generator."""
    return 0.5 * torch.randn(30, generator=torch.Generator().manual_seed(int(g["edit_seed"])))


def _inputs(net: PDFGC, g: Goldens) -> GroupResult:
    """What the goldens feed the networks, rebuilt: bitwise equal."""
    grp = Group("pdfgc.inputs", Tolerance())
    grp.compare("pipe_app_input", images_tensor(g["src_u8"][:1])[0], g["pipe_app_input"])
    for k, noise in enumerate(net.net_generator.noise_maps.maps()):
        grp.compare(f"gen_noise{k}", noise[0, 0], g[f"gen_noise{k}"])
    feat, codes = torch.from_numpy(g["app_id_feat"]), torch.from_numpy(g["pipe_codes"])
    style = torch.cat([feat[g["gen_src_index"]], codes[g["gen_render_frame"]]], dim=1)
    grp.compare("gen_style (app_id_feat + pipe_codes)", style, g["gen_style"])
    grp.compare("edit_delta", _delta(g), g["edit_delta"])
    return grp.result()


def _frontend(g: Goldens, tol: Tolerance) -> GroupResult:
    grp = Group("pdfgc.audio_frontend", tol)
    wav = (g["pipe_wav_int16"].astype(np.float32) / np.float32(32768.0)).astype(np.float32)
    normalised = frontend.normalise(wav)
    grp.compare("pipe_wav", normalised, g["pipe_wav"])
    mel = frontend.mel_spectrogram(normalised)
    grp.compare("pipe_mel", mel, g["pipe_mel"])
    grp.compare("pipe_spec (from pipe_mel)", frontend.mel_windows(g["pipe_mel"]), g["pipe_spec"])
    grp.compare("pipe_spec (end to end)", frontend.speech_windows(wav), g["pipe_spec"])
    return grp.result()


def appearance_groups(net: PDFGC, g: Goldens, tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    trace: dict[str, torch.Tensor] = {}
    id_feat, id_map = net.net_appearance(images_tensor(g["src_u8"]), trace)
    grp = Group("pdfgc.appearance", tols["codes"])
    grp.compare("app_id_feat", id_feat, g["app_id_feat"])
    grp.compare("app_id_map", id_map, g["app_id_map"])
    yield grp.result()
    grp = Group("pdfgc.appearance_internals", tols["internals"])
    for name in ("stem", "layer1", "layer2", "layer3", "layer4"):
        grp.compare(f"app_{name}_chmean", _chmean(trace[name]), g[f"app_{name}_chmean"])
    yield grp.result()


def motion_groups(net: PDFGC, g: Goldens, tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    trace: dict[str, torch.Tensor] = {}
    outputs = net.net_motion(images_tensor(g["frames_u8"]), trace)
    grp = Group("pdfgc.motion", tols["codes"])
    for key, value in zip(("mot_headpose", "mot_eye", "mot_emo", "mot_mouth_feat"), outputs, strict=True):
        grp.compare(key, value, g[key])
    yield grp.result()
    grp = Group("pdfgc.motion_internals", tols["internals"])
    grp.compare("mot_fan_feat", trace["feat"], g["mot_fan_feat"])
    for head in ("headpose", "eye", "emo"):
        grp.compare(f"mot_to_{head}", trace[f"to_{head}"], g[f"mot_to_{head}"])
    for name in ("bn1", "conv2", "conv3", "conv4", "m0", "top_m_0", "bn_end0", "l0"):
        grp.compare(f"mot_{name}_chmean", _chmean(trace[name][0]), g[f"mot_{name}_chmean"])
    grp.compare("mot_l0_spmean", trace["l0"][0].double().mean(dim=0), g["mot_l0_spmean"])
    grp.compare("mot_conv6_map", trace["conv6"][0, 0], g["mot_conv6_map"])
    yield grp.result()


def audio_groups(net: PDFGC, g: Goldens, tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    trace: dict[str, torch.Tensor] = {}
    feat, mouth = net.net_audio(torch.from_numpy(g["pipe_spec"]), trace)
    grp = Group("pdfgc.audio", tols["codes"])
    grp.compare("aud_out", feat, g["aud_out"])
    grp.compare("aud_mouth_embed", mouth, g["aud_mouth_embed"])
    yield grp.result()
    grp = Group("pdfgc.audio_internals", tols["internals"])
    for name in ("bn1", "layer1", "layer2", "layer3", "layer4"):
        grp.compare(f"aud_{name}_chmean", _chmean(trace[name][0]), g[f"aud_{name}_chmean"])
    grp.compare("aud_att_in0", trace["att_in"][0], g["aud_att_in0"])
    grp.compare("aud_att_w0", trace["att_w"][0], g["aud_att_w0"])
    yield grp.result()


def generator_groups(net: PDFGC, g: Goldens, tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    style, maps = torch.from_numpy(g["gen_style"]), torch.from_numpy(g["app_id_map"])
    trace: dict[str, torch.Tensor] = {}
    images = []
    for j, src in enumerate(g["gen_src_index"]):
        images.append(net.net_generator(style[j : j + 1], maps[src : src + 1], trace if j == 0 else None)[0])
    grp = Group("pdfgc.generator_internals", tols["internals"])
    for key in sorted(k for k in g if k.startswith("gen0_")):
        name = key[len("gen0_") :]
        if name.endswith("_chmean"):
            grp.compare(key, _chmean(trace[name.removesuffix("_chmean")][0]), g[key])
        else:
            grp.compare(key, trace[name.removesuffix("_full")][0], g[key])
    yield grp.result()
    grp = Group("pdfgc.gen_img", tols["images"])
    for j, image in enumerate(images):
        grp.compare(f"gen_img[{j}]", image, g["gen_img"][j])
    yield grp.result()


def edit_groups(net: PDFGC, g: Goldens, tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    """C-MET's edit point: the delta joins the raw emotion code before the x1.2 gain."""
    code = (torch.from_numpy(g["pipe_emo_raw"][0]) + _delta(g)) * EMO_GAIN
    grp = Group("pdfgc.edit_code", tols["codes"])
    grp.compare("edit_emo_code", code, g["edit_emo_code"])
    yield grp.result()
    start = net.config.appearance.feat_dim + net.config.audio.mouth_dim
    style = torch.from_numpy(g["gen_style"][0]).clone()
    style[start : start + code.shape[0]] = code
    grp = Group("pdfgc.edit_img", tols["images"])
    grp.compare("edit_style", style, g["edit_style"], Tolerance())
    image = net.net_generator(style[None], torch.from_numpy(g["app_id_map"][:1]))
    grp.compare("edit_img", image[0], g["edit_img"])
    yield grp.result()


def pipeline_groups(net: PDFGC, g: Goldens, tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    """The Tester's stages over the 0.49 s clip: its driving rows, its audio batches, its gains and
    smoothing, and the uint8 panel of its renders (from the kit's codes and our identity)."""
    frames = len(g["pipe_drive_index"])
    lengths = g["pipe_drive_files_count"] - 2  # the Tester drops each folder's first two files
    rows = np.stack([drive_rows(frames, int(n)) for n in lengths], axis=1)
    grp = Group("pdfgc.pipe_drive", Tolerance())
    grp.compare("pipe_drive_index", rows + 2, g["pipe_drive_index"])
    yield grp.result()

    grp = Group("pdfgc.pipe_codes", tols["codes"])
    spec = torch.from_numpy(g["pipe_spec"])
    batches = [net.net_audio(spec[i : i + 8]) for i in range(0, frames, 8)]
    grp.compare("pipe_audio_out", torch.cat([b[0] for b in batches]), g["pipe_audio_out"])
    grp.compare("pipe_mouth_raw", torch.cat([b[1] for b in batches]), g["pipe_mouth_raw"])
    _compare_drive_codes(net, g, grp)
    id_feat, id_map = net.net_appearance(torch.from_numpy(g["pipe_app_input"])[None])
    grp.compare("pipe_id_feat", id_feat[0], g["pipe_id_feat"])
    raw = {k: torch.from_numpy(g[f"pipe_{k}_raw"]) for k in ("mouth", "emo", "eye", "pose")}
    codes = style_codes(raw["mouth"], raw["emo"], raw["eye"], raw["pose"])
    grp.compare("pipe_codes (from the raw codes)", codes, g["pipe_codes"])
    yield grp.result()

    style = torch.cat([id_feat.expand(frames, -1), torch.from_numpy(g["pipe_codes"])], dim=1)
    u8 = [
        render_u8(net.net_generator(style[i : i + 8], id_map.expand(len(style[i : i + 8]), -1, -1, -1)))
        for i in range(0, frames, 8)
    ]
    tol = tols["u8"]
    yield u8_group("pdfgc.pipe_gen_u8", np.concatenate(u8), g["pipe_gen_u8"], tol.max_abs or 0.0, tol.mean_abs or 0.0)


def _compare_drive_codes(net: PDFGC, g: Goldens, grp: Group) -> None:
    """The pipeline's raw motion codes of the output frames whose driving frame is among the kit's 12
    frames (pose and eye positions 2..5; every exp position past the first is the same image)."""
    pose, eye, emo, _ = net.net_motion(images_tensor(g["frames_u8"]))
    index = g["pipe_drive_index"]
    for i, (p, e, y) in enumerate(index):
        if 2 <= p <= 5:
            grp.compare(f"pipe_pose_raw[{i}]", pose[p - 2], g["pipe_pose_raw"][i])
        if e >= 1:
            grp.compare(f"pipe_emo_raw[{i}]", emo[5], g["pipe_emo_raw"][i])
        if 2 <= y <= 5:
            grp.compare(f"pipe_eye_raw[{i}]", eye[8 + y - 2], g["pipe_eye_raw"][i])

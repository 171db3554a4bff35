"""Golden checks behind `cmet conformance --kit DIR`: our modules, rule-filled, against the original's outputs.

A kit is a folder in the format of `shared/conformance/`: two manifests, two golden npz files and
`tolerances.json` with its `recommended_tolerances`. When it holds the folder `audio2lip/`, Audio2Lip
and its mel front end are checked too. Every group is one line of the report.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmet_core.backbones.edtalk.network import Generator
from cmet_core.backbones.registry import backbone_names, backbone_spec
from cmet_core.backbones.spec import BackboneTools
from cmet_core.media import mel
from cmet_core.networks.audio2lip import Audio2Lip, smooth_lips, smoothing_kernel
from cmet_core.networks.connector import Connector, run_windows
from cmet_core.networks.gfpgan import GFPGAN, face_to_tensor, restore_face
from cmet_core.verify.fill import fill_module
from cmet_core.verify.goldens import (
    Goldens,
    Group,
    GroupResult,
    KitError,
    Manifest,
    Tolerance,
    frames_tensor,
    guarded,
    keys_read,
    load_goldens,
    model_checks,
    read_kit_files,
    root_tolerances,
    u8_group,
)
from cmet_core.verify.schedule import official_schedule

KIT_FILES = (
    "edtalk_gen_manifest.json",
    "cmet_connector_manifest.json",
    "golden_edtalk.npz",
    "golden_connector.npz",
    "tolerances.json",
)
A2L_DIR = "audio2lip"
A2L_FILES = ("audio2lip_manifest.json", "golden_audio2lip.npz", "tolerances_audio2lip.json")


def _load_kit(kit: Path) -> tuple[Manifest, Goldens, Goldens, dict[str, Tolerance]]:
    """The root's connector files, EDTalk's goldens (their source frame drives Audio2Lip's A mode) and tolerances."""
    missing = [f for f in KIT_FILES if not (kit / f).is_file()]
    if missing:
        raise KitError(f"{kit}: not a conformance kit, missing {', '.join(missing)}")
    cnm, gc = read_kit_files(kit, "cmet_connector_manifest.json", "golden_connector.npz")
    ge = read_kit_files(kit, "edtalk_gen_manifest.json", "golden_edtalk.npz")[1]
    return cnm, gc, ge, root_tolerances(kit)


def _connector_groups(con: Connector, g: Goldens, tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    def t(key: str) -> torch.Tensor:
        return torch.from_numpy(g[key])

    grp = Group("connector.single", tols["connector_single_batch"])
    out = con.run(t("single_ref"), t("single_e2v"), t("single_ed_neu"))
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

    grp = Group("connector.batch", tols["connector_single_batch"])
    grp.compare("batch_out", con(t("batch_ref"), t("batch_e2v"), t("batch_ed_neu")), g["batch_out"])
    yield grp.result()

    grp = Group("connector.loop", tols["connector_loop_schedule"])
    for prefix, e2v in (("loop", t("loop_e2v")), ("loop_real", t("real_e2v"))):
        pred, delta = run_windows(con, t("loop_ed_neu")[0], e2v)
        grp.compare(f"{prefix}_pred_exp", pred, g[f"{prefix}_pred_exp"])
        grp.compare(f"{prefix}_pred_dir", delta, g[f"{prefix}_pred_dir"])
    yield grp.result()

    grp = Group("connector.schedule", tols["connector_loop_schedule"])
    pred, per_frame = official_schedule(con, t("sched_ed_neu")[0], t("sched_e2v"), int(g["sched_lip_len"]))
    grp.compare("sched_pred_exp", pred, g["sched_pred_exp"])
    grp.compare("sched_exp_per_frame", per_frame, g["sched_exp_per_frame"])
    yield grp.result()
    yield keys_read("connector.keys_read", g, CONNECTOR_UNREAD)


CONNECTOR_UNREAD: dict[str, str] = {
    "real_e2v_happy_files": "provenance: the MEAD .npy names `real_e2v` was averaged from (README), no value",
    "real_e2v_neutral_files": "provenance: the MEAD .npy names `real_e2v` was averaged from (README), no value",
}
A2L_UNREAD: dict[str, str] = {
    "wav_sha256": "provenance: the WAV file's digest; its samples (`wav_int16`) are what the groups read",
    "av_exp_len": "the ping-pong's length inside `official_schedule`; `av_exp_per_frame` and its source rows "
    "(`av_exp_source_row`), which are compared, fix it",
}
GFPGAN_UNREAD: dict[str, str] = {
    "face_files": "provenance: the repository paths of the two faces, whose pixels are `input_u8_256`",
    "face_files_sha256": "provenance: the JPEG files' digests; the decoded pixels are compared instead",
    "filled_state_dict_sha256": "the manifest's digest again: `gfpgan.filled_digest` checks the manifest's",
    "randomize_noise": "always False: our restorer's forward reads its stored noise maps, it has no switch",
}
"""Golden keys no group of the connector, Audio2Lip or GFPGAN reads, each with the reason (`keys_read`
fails on any other)."""


def _load_a2l_kit(kit: Path) -> tuple[Manifest, Goldens, dict[str, Tolerance]]:
    folder = kit / A2L_DIR
    missing = [f for f in A2L_FILES if not (folder / f).is_file()]
    if missing:
        raise KitError(f"{folder}: not an Audio2Lip kit, missing {', '.join(missing)}")
    try:
        manifest = json.loads((folder / A2L_FILES[0]).read_text())
        golden = load_goldens(folder / A2L_FILES[1])
        rec = json.loads((folder / A2L_FILES[2]).read_text())["recommended_tolerances"]
        tols = {
            "outputs": _tolerance(rec["audio2lip_outputs"]),
            "internals": _tolerance(rec["audio2lip_internals"]),
            "exact": Tolerance(),
        }
        av = rec["av_alphas_and_schedule"]
        tols["av_alphas"] = _tolerance(av["av_alpha_pose"])
        tols["av_schedule"] = _tolerance(av["av_pred_exp / av_exp_per_frame / av_exp"])
        img = rec["av_img"]
        tols["av_img"] = Tolerance(max_abs=float(img["max_abs"]), mean_abs=float(img["mean_abs"]))
        for key, spec in rec["mel_float64_implementation"].items():
            if isinstance(spec, dict):
                tols[key] = _tolerance(spec)
    except (ValueError, KeyError, OSError) as exc:
        raise KitError(f"{folder}: unreadable kit file ({exc})") from exc
    return manifest, golden, tols


def _tolerance(spec: dict[str, Any]) -> Tolerance:
    return Tolerance(atol=float(spec.get("atol", 0.0)), rtol=float(spec.get("rtol", 0.0)))


def _a2l_groups(net: Audio2Lip, g: Goldens, tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    exact = tols["exact"]
    grp = Group("audio2lip.mel", tols["orig_mel"])
    # the rates our front end is built for: a kit made at others would need another mel and window count
    grp.compare("wav_sample_rate", np.array(mel.SAMPLE_RATE), g["wav_sample_rate"], exact)
    grp.compare("video_fps", np.array(mel.FPS, np.float32), g["video_fps"], exact)
    wav = (g["wav_int16"].astype(np.float32) / np.float32(32768.0)).astype(np.float32)
    grp.compare("wav_float", wav, g["wav_float"], exact)
    frames = mel.num_video_frames(wav.shape[0])
    length = frames * mel.SAMPLES_PER_FRAME
    grp.compare("num_frames", np.array(frames), g["num_frames"], exact)
    grp.compare("wav_length", np.array(length), g["wav_length"], exact)
    pre = mel.preemphasis(wav[:length])
    grp.compare("preemph_wav", pre, g["preemph_wav"], tols["preemph_wav"])
    mag = mel.stft_magnitude(g["preemph_wav"])
    grp.compare("stft_mag", mag, g["stft_mag"], tols["stft_mag"])
    grp.compare("mel_basis", mel.mel_basis(), g["mel_basis"], tols["mel_basis"])
    grp.compare("mel_amp", mel.mel_basis() @ g["stft_mag"], g["mel_amp"], tols["mel_amp"])
    grp.compare("orig_mel (from mel_amp)", mel.normalise_db(g["mel_amp"]).T, g["orig_mel"])
    full, _ = mel.mel_spectrogram(wav)
    grp.compare("orig_mel (end to end)", full, g["orig_mel"])
    grp.compare("mel_frames", np.array(full.shape[0]), g["mel_frames"], exact)
    yield grp.result()

    grp = Group("audio2lip.mel_windows", tols["indiv_mels"])
    rows = mel.window_rows(frames, int(g["mel_frames"]))
    grp.compare("mel_window_start", mel.window_starts(frames), g["mel_window_start"], exact)
    grp.compare("mel_window_index", rows, g["mel_window_index"], exact)
    grp.compare("indiv_mels (from orig_mel)", mel.mel_windows(g["orig_mel"], frames), g["indiv_mels"])
    ours_windows = mel.mel_windows(full, frames)
    grp.compare("indiv_mels (end to end)", ours_windows, g["indiv_mels"])
    yield grp.result()

    windows = torch.from_numpy(g["indiv_mels"])[:, None]
    trace: list[torch.Tensor] = []
    feat = net.features(windows, trace)
    grp = Group("audio2lip.internals", tols["internals"])
    for j, block in enumerate(trace):
        grp.compare(f"a2l_block{j}_chmean", block.mean(dim=(2, 3)), g[f"a2l_block{j}_chmean"])
        if f"a2l_block{j}_frame10" in g:
            grp.compare(f"a2l_block{j}_frame10", block[10], g[f"a2l_block{j}_frame10"])
    grp.compare("a2l_feat512", feat, g["a2l_feat512"])
    yield grp.result()

    grp = Group("audio2lip.output", tols["outputs"])
    out = net(windows, 1, windows.shape[0])[0]
    grp.compare("a2l_out", out, g["a2l_out"])
    e2e = net(torch.from_numpy(ours_windows)[:, None], 1, frames)[0]
    grp.compare("a2l_out (from our mel)", e2e, g["a2l_out"])
    yield grp.result()

    grp = Group("audio2lip.lip_smooth", tols["outputs"])
    grp.compare("smooth_kernel", smoothing_kernel(), g["smooth_kernel"], exact)
    grp.compare("lip_smooth (from a2l_out)", smooth_lips(torch.from_numpy(g["a2l_out"])), g["lip_smooth"])
    grp.compare("lip_smooth (end to end)", smooth_lips(e2e), g["lip_smooth"])
    yield grp.result()


def _a_mode_groups(
    net: Audio2Lip, g: Goldens, source_u8: np.ndarray, tols: dict[str, Tolerance]
) -> Iterator[GroupResult]:
    """A mode (`inference.py --opt A`): expression schedule from the pose video, then three renders.

    Each stage starts from the kit's stored previous one; the lip alphas come from our own lip track.
    The generator and connector are rule-filled afresh (their digests are the edtalk/connector groups').
    """
    gen, con = Generator().eval(), Connector().eval()
    fill_module(gen, "edtalk")
    fill_module(con, "connector")
    frames_idx = torch.from_numpy(g["av_frame_idx"])
    grp = Group("audio2lip.av_schedule", tols["av_schedule"])
    lip_len = int(g["av_lip_len"])
    pred, per_frame = official_schedule(con, torch.from_numpy(g["av_ed_neu"]), torch.from_numpy(g["av_e2v"]), lip_len)
    grp.compare("av_pred_exp", pred, g["av_pred_exp"])
    grp.compare("av_exp_per_frame", per_frame, g["av_exp_per_frame"])
    grp.compare("av_exp_per_frame (rows av_exp_source_row)", per_frame, pred.numpy()[g["av_exp_source_row"]])
    grp.compare("av_exp", per_frame[frames_idx], g["av_exp"])
    wav = (g["wav_int16"].astype(np.float32) / np.float32(32768.0)).astype(np.float32)
    lips = smooth_lips(net(torch.from_numpy(mel.lip_windows(wav))[:, None])[0])
    grp.compare("av_lip_alpha (our lip track)", lips[frames_idx], g["av_lip_alpha"], tols["outputs"])
    yield grp.result()

    grp = Group("audio2lip.av_alpha_pose", tols["av_alphas"])
    # the render loop's pose clamp: frame i takes pose frame min(i, len_pose - 1)
    pose_idx = np.minimum(g["av_frame_idx"], int(g["av_len_pose"]) - 1)
    grp.compare("av_pose_frame_idx (pose clamp)", pose_idx, g["av_pose_frame_idx"], tols["exact"])
    decoded = [hashlib.sha256(np.ascontiguousarray(f).tobytes()).hexdigest() for f in g["av_pose_frames_u8"]]
    same = [float(h == str(ref)) for h, ref in zip(decoded, g["video_frame_sha256"][pose_idx], strict=True)]
    grp.compare("av_pose_frames_u8 (the decoded video's frames)", np.array(same), np.ones(len(same)), tols["exact"])
    ed_neu, pose = gen.compute_alpha_D(frames_tensor(g["av_pose_frames_u8"]))[:2]
    grp.compare("av_ed_neu (rows of the pose frames)", ed_neu, g["av_ed_neu"][pose_idx])
    grp.compare("av_alpha_pose", pose, g["av_alpha_pose"])
    yield grp.result()

    grp = Group("audio2lip.av_img", tols["av_img"])
    src = gen.prepare_source(frames_tensor(source_u8[None]))
    lip_alpha, exp = torch.from_numpy(g["av_lip_alpha"]), torch.from_numpy(g["av_exp"])
    for i in range(len(frames_idx)):
        img = gen.render(src, lip_alpha[i : i + 1], pose[i : i + 1], exp[i : i + 1])
        grp.compare(f"av_img[{i}] (frame {int(frames_idx[i])})", img[0], g["av_img"][i])
    yield grp.result()


@torch.no_grad()
def run_kit(kit: Path) -> Iterator[GroupResult]:
    """Build each model, fill it by the rule, check its digest, then every golden group (Audio2Lip if in the kit)."""
    cnm, gc, ge, tols = _load_kit(Path(kit))
    # loaded first, so a broken audio2lip/ folder is reported before minutes of EDTalk checks
    a2l = _load_a2l_kit(Path(kit)) if (Path(kit) / A2L_DIR).is_dir() else None
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

    for tools in _backbone_tools():
        yield from tools.conformance(Path(kit))
    yield from _connector_checks(cnm, gc, tols)
    if a2l is not None:
        yield from _a2l_checks(a2l, Audio2Lip().eval(), ge["source_u8"])
    if (Path(kit) / GFPGAN_DIR).is_dir():
        yield from run_gfpgan_kit(Path(kit) / GFPGAN_DIR)


@torch.no_grad()
def run_connector_kit(kit: Path) -> Iterator[GroupResult]:
    """The connector's groups alone (its files lie at the kit's root): digest, single, batch, loop, schedule."""
    cnm, gc, _, tols = _load_kit(Path(kit))
    yield from _connector_checks(cnm, gc, tols)


def _connector_checks(cnm: Manifest, gc: Goldens, tols: dict[str, Tolerance]) -> Iterator[GroupResult]:
    yield from model_checks(
        "connector", Connector().eval(), cnm, lambda con: _connector_groups(con, gc, tols), exclude_pe=True
    )


_A2LKit = tuple[Manifest, Goldens, dict[str, Tolerance]]


@torch.no_grad()
def run_audio2lip_kit(kit: Path, net: Audio2Lip | None = None, renders: bool = True) -> Iterator[GroupResult]:
    """The kit's `audio2lip/` groups alone: digest, mel, windows, internals, output, lip track, then A mode.

    `net` replaces the rule-filled default model (tests pass a broken one to see the groups fail);
    `renders=False` leaves out the A-mode groups (the generator's renders take the most time).
    """
    source = _load_kit(Path(kit))[2]["source_u8"] if renders else None
    yield from _a2l_checks(_load_a2l_kit(Path(kit)), net if net is not None else Audio2Lip().eval(), source)


def _a2l_checks(loaded: _A2LKit, net: Audio2Lip, source_u8: np.ndarray | None) -> Iterator[GroupResult]:
    manifest, golden, tols = loaded
    yield from model_checks("audio2lip", net, manifest, lambda m: _a2l_groups(m, golden, tols), exclude_pe=False)
    if source_u8 is not None:  # every group ran: the kit's keys can be accounted for
        yield from guarded("audio2lip.a_mode", lambda: _a_mode_groups(net, golden, source_u8, tols))
        yield keys_read("audio2lip.keys_read", golden, A2L_UNREAD)


def _backbone_tools() -> Iterator[BackboneTools]:
    """The tools of every registered backbone that has them (their conformance groups and kit files)."""
    for name in backbone_names():
        spec = backbone_spec(name)
        if spec.tools is not None:
            yield spec.tools()


def kit_fingerprint(kit: Path) -> str:
    """Short digest of the kit's files, printed so a report says which kit it checked."""
    h = hashlib.sha256()
    extensions = (
        *(f"{A2L_DIR}/{f}" for f in A2L_FILES),
        *(f"{GFPGAN_DIR}/{f}" for f in GFPGAN_FILES),
        *(name for tools in _backbone_tools() for name in tools.kit_files),
    )
    for name in (*KIT_FILES, *extensions):
        path = Path(kit) / name
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


GFPGAN_DIR = "gfpgan"
GFPGAN_FILES = ("gfpgan_manifest.json", "golden_gfpgan.npz", "tolerances_gfpgan.json")


def _load_gfpgan_kit(kit: Path) -> tuple[Manifest, Goldens, dict[str, Any]]:
    missing = [f for f in GFPGAN_FILES if not (kit / f).is_file()]
    if missing:
        raise KitError(f"{kit}: not a GFPGAN kit, missing {', '.join(missing)}")
    try:
        manifest = json.loads((kit / GFPGAN_FILES[0]).read_text())
        golden = load_goldens(kit / GFPGAN_FILES[1])
        rec = json.loads((kit / GFPGAN_FILES[2]).read_text())["recommended_tolerances"]
    except (ValueError, KeyError, OSError) as exc:
        raise KitError(f"{kit}: unreadable GFPGAN kit file ({exc})") from exc
    return manifest, golden, rec


def _gfpgan_groups(net: GFPGAN, g: Goldens, rec: dict[str, Any]) -> Iterator[GroupResult]:
    """One restore per stored face (batch 1, fixed noise), compared level by level."""
    import cv2  # deferred: cv2 (OpenCV), as in cmet_core.enhance

    faces = g["input_u8_512"]
    grp = Group("gfpgan.net_input", Tolerance())
    for i, (small, face) in enumerate(zip(g["input_u8_256"], faces, strict=True)):
        # `GFPGANer.enhance` on an aligned face: OpenCV's uint8 bilinear resize to 512, then the conversion
        resized = cv2.resize(small, (face.shape[1], face.shape[0]), interpolation=cv2.INTER_LINEAR)
        grp.compare(f"input_u8_512[{i}] (resized from input_u8_256)", resized, face)
        grp.compare(f"net_input[{i}]", face_to_tensor(face)[0], g["net_input"][i])
        grp.compare(f"net_input[{i}] (from input_u8_256)", face_to_tensor(resized)[0], g["net_input"][i])
    yield grp.result()

    traces: list[dict[str, torch.Tensor]] = []
    restored: list[np.ndarray] = []
    for face in faces:
        trace: dict[str, torch.Tensor] = {}
        restored.append(restore_face(net, face, trace=trace))
        traces.append(trace)

    chm = rec["style_code_enc_sft_unet_dec_chmeans"]
    full = rec["enc_final_feat_and_dec_rgbskip_full"]
    levels = Group("gfpgan.internals_per_level", Tolerance(atol=float(chm["atol"]), rtol=float(chm["rtol"])))
    maps = Group("gfpgan.internals_full_maps", Tolerance(atol=float(full["atol"])))
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
    grp = Group("gfpgan.net_output", Tolerance(max_abs=float(out["max_abs"]), mean_abs=float(out["mean_abs"])))
    grp.compare("net_output", torch.stack([t["net_output"] for t in traces]), g["net_output"])
    yield grp.result()

    u8 = rec["restored_u8"]
    yield u8_group(
        "gfpgan.restored_u8", np.stack(restored), g["restored_u8"], float(u8["max_abs"]), float(u8["max_frac_differ"])
    )
    yield keys_read("gfpgan.keys_read", g, GFPGAN_UNREAD)


@torch.no_grad()
def run_gfpgan_kit(kit: Path) -> Iterator[GroupResult]:
    """The GFPGAN v1.4 restorer (kit folder `gfpgan/`): digest, net input, internals, raw output, uint8 face."""
    manifest, golden, rec = _load_gfpgan_kit(Path(kit))
    yield from model_checks(
        "gfpgan", GFPGAN().eval(), manifest, lambda net: _gfpgan_groups(net, golden, rec), exclude_pe=False
    )

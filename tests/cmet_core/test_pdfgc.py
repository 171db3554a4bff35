"""PD-FGC's four networks: their keys against the kit's manifest, the fill rule, tiny builds, the
strict reader of the published files, the Tester's code handling, and every golden group."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cmet_core.backbones.pdfgc import frontend, motion
from cmet_core.backbones.pdfgc.codes import drive_rows, render_u8, smooth_mouth, smooth_pose, style_codes
from cmet_core.backbones.pdfgc.conformance import (
    GOLDEN,
    KIT_DIR,
    MANIFEST,
    generator_groups,
    kit_checks,
    motion_groups,
    read_tolerances,
)
from cmet_core.backbones.pdfgc.entry import FRAMING, NAME, pdfgc_widths
from cmet_core.backbones.pdfgc.network import CHECKPOINT_FILES, PDFGC, TINY_PDFGC, PDFGCConfig, unread_keys
from cmet_core.backbones.pdfgc.rule import pdfgc_rule
from cmet_core.backbones.pdfgc.tools import convert_pdfgc, load_published
from cmet_core.backbones.registry import backbone_spec
from cmet_core.backbones.spec import Widths
from cmet_core.modelsets.build import verify_set
from cmet_core.modelsets.checkpoints import load_module
from cmet_core.modelsets.manifests import read_model_manifest
from cmet_core.modelsets.sets import load_set, read_set
from cmet_core.networks.errors import ModelLoadError
from cmet_core.networks.runtime import RuntimeOptions
from cmet_core.verify.fill import fill_module
from cmet_core.verify.goldens import GroupResult, read_kit_files


@pytest.fixture(scope="module")
def pdfgc_kit(conformance_kit: Path) -> Path:
    folder = conformance_kit / KIT_DIR
    if not (folder / MANIFEST).is_file():
        pytest.skip(f"no PD-FGC kit at {folder}")
    return folder


@pytest.fixture(scope="module")
def manifest(pdfgc_kit: Path) -> dict[str, dict]:
    return {k["key"]: k for k in json.loads((pdfgc_kit / MANIFEST).read_text())["keys"]}


@pytest.fixture(scope="module")
def tiny() -> PDFGC:
    net = PDFGC(TINY_PDFGC).eval()
    fill_module(net, NAME)
    return net


def test_published_keys_and_shapes_are_the_manifests(manifest: dict[str, dict]) -> None:
    state = PDFGC().state_dict()
    assert sorted(state) == sorted(manifest)
    assert [k for k, v in state.items() if list(v.shape) != manifest[k]["shape"]] == []
    assert [k for k, v in state.items() if str(v.dtype).removeprefix("torch.") != manifest[k]["dtype"]] == []
    # the keys we hold only for a strict load are exactly those the manifest says no render reads
    assert unread_keys(state) == sorted(k for k, e in manifest.items() if e["role"] != "read")


def test_fill_rule_rows_are_the_manifests(manifest: dict[str, dict]) -> None:
    for key, entry in manifest.items():
        fill = pdfgc_rule(key, torch.Size(entry["shape"]))
        if entry["fill"] == "keep-as-constructed":
            assert fill is None, key
        else:
            assert fill == pytest.approx((entry["fill"]["a"], entry["fill"]["s"]), rel=1e-15), key


def test_tiny_networks_run_at_the_published_framing(tiny: PDFGC) -> None:
    frames = torch.rand(2, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        id_feat, id_map = tiny.net_appearance(frames)
        pose, eye, emo, mouth_feat = tiny.net_motion(frames)
        _, mouth = tiny.net_audio(torch.rand(2, 1, 80, 20))
        codes = style_codes(mouth, emo, eye, pose)
        image = tiny.net_generator(torch.cat([id_feat, codes], 1), id_map)
    assert (pose.shape, eye.shape, emo.shape, mouth.shape) == ((2, 6), (2, 6), (2, 30), (2, 500))
    assert codes.shape == (2, 542)
    assert image.shape == (2, 3, 224, 224) and float(image.abs().max()) < 1
    assert pdfgc_widths(TINY_PDFGC.to_dict()) == Widths(exp=30, lip=500, lip_part="mouth")
    top, left, bottom, right = FRAMING.window or (0, 0, 0, 0)
    assert (FRAMING.size, bottom - top, right - left, left) == (224, 192, 192, 16)  # SPEC section 3's crop
    assert PDFGCConfig.from_dict(json.loads(json.dumps(TINY_PDFGC.to_dict()))) == TINY_PDFGC


def test_noise_maps_are_state_from_the_seed(tiny: PDFGC) -> None:
    """Same seed, same maps; they are not in the state dict, so loading weights keeps them."""
    again = PDFGC(TINY_PDFGC)
    for a, b in zip(tiny.net_generator.noise_maps.maps(), again.net_generator.noise_maps.maps(), strict=True):
        assert torch.equal(a, b)
    assert not any("noise_maps" in k for k in tiny.state_dict())
    assert backbone_spec(NAME).require_tools().fill_rule is pdfgc_rule


def _write_published(net: PDFGC, folder: Path, drop: str | None = None) -> None:
    state = net.state_dict()
    for prefix, name in CHECKPOINT_FILES.items():
        part = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".") and k != drop}
        torch.save(part, folder / name)


def test_published_files_load_strictly(tiny: PDFGC, tmp_path: Path) -> None:
    _write_published(tiny, tmp_path, drop="net_appearance.fc.weight")  # never read: may be absent
    loaded = load_published(tmp_path, TINY_PDFGC)
    for key, value in tiny.state_dict().items():
        if key != "net_appearance.fc.weight":
            assert torch.equal(loaded.state_dict()[key], value), key
    _write_published(tiny, tmp_path, drop="net_motion.to_emo.3.weight")  # read by every render
    with pytest.raises(ModelLoadError, match="1 missing keys: net_motion.to_emo.3.weight"):
        load_published(tmp_path, TINY_PDFGC)


def test_published_files_convert_to_one_member(tiny: PDFGC, tmp_path: Path) -> None:
    _write_published(tiny, tmp_path)
    manifest_path = convert_pdfgc(tmp_path, tmp_path / "set", config=TINY_PDFGC)
    loaded = load_module(manifest_path, NAME)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in tiny.state_dict().items())
    manifest = read_model_manifest(manifest_path, NAME)[0]
    assert manifest.licence is not None and "VoxCeleb2" in manifest.licence


def test_audio_front_end_counts() -> None:
    wav = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.3
    mel = frontend.mel_spectrogram(frontend.normalise(wav))
    assert mel.shape == (16000 // 160 + 7, 80) and 0 <= mel.min() and mel.max() <= 1
    windows = frontend.speech_windows(wav)
    assert windows.shape == (mel.shape[0] // 4 - 4, 1, 80, 20)
    assert np.array_equal(windows[1, 0], mel[4:24].T)
    with pytest.raises(ValueError, match="too short"):
        frontend.speech_windows(wav[:1000])


def test_driving_rows_wrap_per_batch() -> None:
    assert drive_rows(10, 100).tolist() == list(range(10))
    assert drive_rows(10, 9).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 0]  # s > e in the second batch
    assert drive_rows(10, 8).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]  # s == e: a full cycle


def test_gains_and_edge_rules() -> None:
    pose = torch.arange(4.0)[:, None]
    assert smooth_pose(pose)[:, 0].tolist() == pytest.approx([0.5, 1.0, 2.0, 2.5])
    flat = smooth_mouth(torch.ones(3, 1))[:, 0]
    assert flat[1] == pytest.approx(1.0) and flat[0] == pytest.approx(0.27406862 + 0.45186276)
    codes = style_codes(torch.zeros(3, 500), torch.ones(3, 30), torch.ones(3, 6), torch.zeros(3, 6))
    assert codes[0, 500:530].tolist() == pytest.approx([1.2] * 30) and codes[0, 530:536].tolist() == pytest.approx(
        [1.2] * 6
    )
    u8 = render_u8(torch.tensor([-1.0, 0.0, 0.999])[None, :, None, None])
    assert u8[0, 0, 0].tolist() == [254, 127, 0]  # BGR, truncated


@pytest.fixture(scope="module")
def results(pdfgc_kit: Path) -> dict[str, GroupResult]:
    """Every PD-FGC group, run once for the module (about a minute on two CPU threads)."""
    with torch.no_grad():
        return {r.name: r for r in kit_checks(pdfgc_kit.parent)}


GROUPS = {
    "digests": ("pdfgc.filled_digest", "pdfgc.network_digests", "pdfgc.inputs"),
    "front end": ("pdfgc.audio_frontend",),
    "appearance": ("pdfgc.appearance", "pdfgc.appearance_internals"),
    "motion": ("pdfgc.motion", "pdfgc.motion_internals"),
    "audio": ("pdfgc.audio", "pdfgc.audio_internals"),
    "generator": ("pdfgc.generator_internals", "pdfgc.gen_img"),
    "edit": ("pdfgc.edit_code", "pdfgc.edit_img"),
    "pipeline": ("pdfgc.pipe_drive", "pdfgc.pipe_codes", "pdfgc.pipe_gen_u8"),
    "keys read": ("pdfgc.keys_read",),
}


@pytest.mark.slow
@pytest.mark.parametrize("part", list(GROUPS))
def test_goldens(results: dict[str, GroupResult], part: str) -> None:
    for name in GROUPS[part]:
        assert results[name].passed, results[name].line()


@pytest.mark.slow
def test_every_group_is_listed(results: dict[str, GroupResult]) -> None:
    assert sorted(results) == sorted(n for names in GROUPS.values() for n in names)


@pytest.mark.slow
def test_tiny_set_of_the_backbone_verifies(tiny_pdfgc_set: Path) -> None:
    """Registered: a set names it, stores its four networks as one member and loads them strictly, with
    a connector as wide as its emotion code; the set builds its backbone."""
    report = verify_set(tiny_pdfgc_set)
    assert [c.status for c in report.checks if c.kind == NAME] == ["ok"]
    assert report.ok, [c.line() for c in report.failures]
    assert "audio2lip" not in read_set(tiny_pdfgc_set).models  # its lips come from its own audio encoder
    models = load_set(tiny_pdfgc_set)
    assert models.connector is not None and models.connector.cfg.exp_dim == 30
    backbone = models.build_backbone(RuntimeOptions(device="cpu"))
    assert backbone.name == NAME and backbone.widths.exp == 30 and backbone.speech_lips is not None


@pytest.fixture(scope="module")
def filled(pdfgc_kit: Path) -> tuple[PDFGC, dict[str, np.ndarray], dict]:
    net = PDFGC().eval()
    fill_module(net, NAME)
    return net, read_kit_files(pdfgc_kit, MANIFEST, GOLDEN)[1], read_tolerances(pdfgc_kit)


@pytest.mark.slow
def test_groups_catch_the_kits_bug_examples(
    filled: tuple[PDFGC, dict[str, np.ndarray], dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tolerances are tight enough to see two of the kit's real bugs: noise maps of zeros instead of
    the seeded ones, and the hourglass upsampling with `align_corners=True`."""
    net, golden, tols = filled
    maps = net.net_generator.noise_maps
    saved = [m.clone() for m in maps.maps()]
    with torch.no_grad():
        for m in maps.maps():
            m.zero_()
        results = {r.name: r for r in generator_groups(net, golden, tols)}
        for m, s in zip(maps.maps(), saved, strict=True):
            m.copy_(s)
    assert not results["pdfgc.gen_img"].passed and results["pdfgc.gen_img"].max_abs > 0.05

    interpolate = torch.nn.functional.interpolate

    def corners_aligned(x: torch.Tensor, size: torch.Size, mode: str, align_corners: bool) -> torch.Tensor:
        assert align_corners is False  # what the hourglass asks for
        return interpolate(x, size=size, mode=mode, align_corners=True)

    monkeypatch.setattr(motion.F, "interpolate", corners_aligned)
    with torch.no_grad():
        results = {r.name: r for r in motion_groups(net, golden, tols)}
    assert not results["pdfgc.motion"].passed and "mot_emo" in results["pdfgc.motion"].detail

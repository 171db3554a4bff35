"""GFPGAN v1.4 restorer: a tiny network's behaviour, and the kit's goldens (`gfpgan/` of the conformance kit)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cmet_core.networks.gfpgan import GFPGAN, GFPGANConfig, face_to_tensor, restore_face, tensor_to_face
from cmet_core.verify.conformance import GFPGAN_DIR, run_gfpgan_kit
from cmet_core.verify.fill import fill_module
from cmet_core.verify.goldens import KitError

TINY = GFPGANConfig(out_size=32, style_dim=16, narrow=1 / 32, num_mlp=2)


@pytest.fixture
def tiny() -> GFPGAN:
    net = GFPGAN(TINY).eval()
    fill_module(net, "gfpgan")
    return net


@pytest.fixture
def face() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def gfpgan_kit(conformance_kit: Path) -> Path:
    kit = conformance_kit / GFPGAN_DIR
    if not (kit / "golden_gfpgan.npz").is_file():
        pytest.skip(f"GFPGAN conformance kit not found at {kit} (set CMET_CONFORMANCE_KIT)")
    return kit


def test_tiny_restorer_restores_one_face(tiny: GFPGAN, face: np.ndarray) -> None:
    out = restore_face(tiny, face)
    assert out.shape == face.shape and out.dtype == np.uint8
    assert not np.array_equal(out, face)


def test_fixed_noise_gives_identical_outputs(tiny: GFPGAN, face: np.ndarray) -> None:
    assert np.array_equal(restore_face(tiny, face), restore_face(tiny, face))
    with torch.no_grad():
        x = face_to_tensor(face)
        fresh = [tiny(x, fixed_noise=False) for _ in range(2)]
    assert not torch.equal(fresh[0], fresh[1])  # the noise is really injected


def test_bgr_and_rgb_give_the_same_face(tiny: GFPGAN, face: np.ndarray) -> None:
    bgr = restore_face(tiny, face, bgr=True)
    rgb = restore_face(tiny, np.ascontiguousarray(face[..., ::-1]), bgr=False)
    assert np.array_equal(bgr, rgb[..., ::-1])


def test_strict_load_round_trips_and_refuses_a_missing_key(tiny: GFPGAN, face: np.ndarray) -> None:
    state = tiny.state_dict()
    assert sum(k.startswith("stylegan_decoder.noises.noise") for k in state) == TINY.num_noises
    other = GFPGAN(TINY).eval()
    other.load_state_dict(state, strict=True)
    assert np.array_equal(restore_face(other, face), restore_face(tiny, face))
    del state["stylegan_decoder.noises.noise0"]
    with pytest.raises(RuntimeError, match="noise0"):
        GFPGAN(TINY).load_state_dict(state, strict=True)


def test_output_conversion_clamps_a_copy_and_rounds() -> None:
    levels = [-3.0, 3.0, 2 * 200.7 / 255 - 1, 2 * 10.2 / 255 - 1]
    y = torch.tensor(levels).view(1, 1, 4).expand(3, 1, 4).clone()
    raw = y.clone()
    u8 = tensor_to_face(y, bgr=False)
    assert torch.equal(y, raw)  # the raw output is not clamped in place
    assert u8[0, :, 0].tolist() == [0, 255, 201, 10]  # rounded, not truncated


def test_wrong_size_face_is_refused(tiny: GFPGAN) -> None:
    with pytest.raises(ValueError, match="32x32"):
        restore_face(tiny, np.zeros((64, 64, 3), np.uint8))


def test_default_config_has_the_manifest_keys_and_shapes(gfpgan_kit: Path) -> None:
    manifest = json.loads((gfpgan_kit / "gfpgan_manifest.json").read_text())
    with torch.device("meta"):
        state = GFPGAN().state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == {e["key"]: e["shape"] for e in manifest["keys"]}


def test_kit_groups_match(gfpgan_kit: Path) -> None:
    results = list(run_gfpgan_kit(gfpgan_kit))
    names = {r.name for r in results}
    assert {
        "gfpgan.filled_digest",
        "gfpgan.net_input",
        "gfpgan.internals_per_level",
        "gfpgan.internals_full_maps",
        "gfpgan.net_output",
        "gfpgan.restored_u8",
        "gfpgan.keys_read",
    } == names
    assert all(r.passed for r in results), "\n".join(r.line() for r in results)


def test_incomplete_gfpgan_kit_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "gfpgan_manifest.json").write_text("{}")
    with pytest.raises(KitError, match="missing golden_gfpgan.npz, tolerances_gfpgan.json"):
        list(run_gfpgan_kit(tmp_path))

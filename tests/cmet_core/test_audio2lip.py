"""Audio2Lip and its mel front end: a tiny network, strict loading, resampling, and the kit's goldens."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import soxr
import torch
from typer.testing import CliRunner

from cmet_cli.main import app
from cmet_core.backbones.edtalk.network import Generator
from cmet_core.media import mel as melmod
from cmet_core.networks.audio2lip import TINY_AUDIO2LIP, Audio2Lip, smooth_lips, smoothing_kernel
from cmet_core.settings import get_settings
from cmet_core.verify.conformance import KIT_FILES, run_audio2lip_kit
from cmet_core.verify.fill import fill_module


@pytest.fixture(scope="module")
def a2l_kit() -> Path:
    kit = get_settings().conformance_kit / "audio2lip"
    if not (kit / "golden_audio2lip.npz").is_file():
        pytest.skip(f"Audio2Lip conformance kit not found at {kit} (set CMET_CONFORMANCE_KIT)")
    return kit


def _tone(rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    """A 440 Hz + 1.3 kHz tone with a slow envelope, (channels, n) float32, channels slightly different."""
    t = np.arange(int(rate * seconds)) / rate
    env = 0.5 + 0.4 * np.sin(2 * np.pi * 1.5 * t)
    rows = [
        env * (0.3 * np.sin(2 * np.pi * 440 * t) + (0.1 + 0.05 * c) * np.sin(2 * np.pi * 1300 * t))
        for c in range(channels)
    ]
    return np.stack(rows).astype(np.float32)


def test_tiny_audio2lip_runs_and_fills() -> None:
    net = Audio2Lip(TINY_AUDIO2LIP).eval()
    fill_module(net, "audio2lip")
    wav = _tone(16000, 0.5)[0]
    windows = torch.from_numpy(melmod.lip_windows(wav))[:, None]
    assert windows.shape == (12, 1, 80, 16)
    with torch.no_grad():
        lips = net(windows, 1, windows.shape[0])[0]
        track = smooth_lips(lips)
    assert lips.shape == track.shape == (12, 20)
    assert torch.isfinite(track).all() and float(lips.std()) > 0
    assert sum(p.numel() for p in net.parameters()) < 20_000


def test_strict_load_round_trips() -> None:
    src = Audio2Lip().eval()
    fill_module(src, "audio2lip")
    dst = Audio2Lip().eval()
    dst.load_state_dict(src.state_dict(), strict=True)
    x = torch.randn(3, 1, 80, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))
    partial = {k: v for k, v in src.state_dict().items() if not k.endswith("running_var")}
    with pytest.raises(RuntimeError, match="running_var"):
        dst.load_state_dict(partial, strict=True)


def test_strict_load_takes_the_manifest_keys(a2l_kit: Path) -> None:
    manifest = json.loads((a2l_kit / "audio2lip_manifest.json").read_text())
    state = {k["key"]: torch.zeros(k["shape"], dtype=getattr(torch, k["dtype"])) for k in manifest["keys"]}
    Audio2Lip().load_state_dict(state, strict=True)
    assert len(state) == manifest["num_keys"] == 93


def test_smoothing_zero_pads_the_edges() -> None:
    k = smoothing_kernel()
    assert np.allclose(k.numpy(), [0.27406862, 0.45186276, 0.27406862])
    y = torch.ones(5, 2)
    s = smooth_lips(y)
    assert torch.allclose(s[0], k[1] + k[2]) and torch.allclose(s[-1], k[0] + k[1])
    assert torch.allclose(s[2], torch.ones(2))


def test_windows_truncate_and_clamp() -> None:
    rows = melmod.window_rows(174, 557)
    assert rows[:3, 0].tolist() == [0, 0, 0]  # starts -6, -3, 0: truncated toward zero, clamped
    assert rows[0].tolist() == [0] * 6 + list(range(10))
    assert rows[1].tolist() == [0] * 3 + list(range(13))
    assert rows[173, -1] == 556


def test_mel_of_a_48k_stereo_clip_is_resampled(tmp_path: Path) -> None:
    stereo = _tone(48000, 1.0, channels=2)
    path = tmp_path / "tone48k.wav"
    soundfile.write(path, stereo.T, 48000, subtype="FLOAT")
    wav = melmod.read_speech(path)
    expect = soxr.resample(stereo.mean(axis=0, dtype=np.float32), 48000, 16000, quality="HQ")
    assert wav.dtype == np.float32 and wav.shape == (math.ceil(stereo.shape[1] / 3),)
    assert np.array_equal(wav, expect[: wav.shape[0]])
    mel, frames = melmod.mel_spectrogram(wav)
    assert frames == 25 and mel.shape == (81, 80)
    native, _ = melmod.mel_spectrogram(_tone(16000, 1.0, channels=2).mean(axis=0, dtype=np.float32))
    # away from the resampler's start/end transients the spectrum is the one of the clip made at 16 kHz
    assert float(np.abs(mel - native)[2:-2].max()) < 1e-3
    assert melmod.num_video_frames(stereo.shape[1]) == 75  # taken as 16 kHz, it would be three times too long


def test_kit_groups_match(a2l_kit: Path) -> None:
    results = {r.name: r for r in run_audio2lip_kit(a2l_kit.parent)}
    assert set(results) == {
        "audio2lip.filled_digest",
        "audio2lip.mel",
        "audio2lip.mel_windows",
        "audio2lip.internals",
        "audio2lip.output",
        "audio2lip.lip_smooth",
        "audio2lip.av_schedule",
        "audio2lip.av_alpha_pose",
        "audio2lip.av_img",
        "audio2lip.keys_read",
    }
    assert all(r.passed for r in results.values()), [r.line() for r in results.values()]
    assert results["audio2lip.mel"].max_abs < 1e-9 and results["audio2lip.output"].max_abs < 5e-5


def test_kit_groups_catch_batchnorm_in_train_mode(a2l_kit: Path) -> None:
    results = {r.name: r for r in run_audio2lip_kit(a2l_kit.parent, Audio2Lip().train(), renders=False)}
    assert results["audio2lip.filled_digest"].passed and results["audio2lip.mel"].passed
    assert not results["audio2lip.output"].passed and not results["audio2lip.lip_smooth"].passed


def test_incomplete_audio2lip_folder_is_a_clear_error(conformance_kit: Path, a2l_kit: Path, tmp_path: Path) -> None:
    for name in KIT_FILES:
        shutil.copy(conformance_kit / name, tmp_path / name)
    (tmp_path / "audio2lip").mkdir()
    shutil.copy(a2l_kit / "audio2lip_manifest.json", tmp_path / "audio2lip")
    result = CliRunner().invoke(app, ["conformance", "--kit", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "missing golden_audio2lip.npz, tolerances_audio2lip.json" in result.output
    assert "Traceback" not in result.output and "ok " not in result.output


def test_a_mode_expression_input_from_the_pose_video(a2l_kit: Path, test_data: Path) -> None:
    """The kit stores `av_ed_neu`; here its last chunk of 8 (frames 168-174) is rebuilt from the decoded pose video.

    Every frame's hash is checked; one chunk keeps the test at seconds (all 22 chunks take two minutes here),
    and frames 0-7 are already the kit's `frames_u8`.
    """
    video = test_data / "video" / "mead_W009_038_cropped.mp4"
    if not video.is_file():
        pytest.skip(f"pose video {video} not found (set CMET_TEST_DATA)")
    golden = np.load(a2l_kit / "golden_audio2lip.npz")
    with av.open(str(video)) as container:
        frames = [f.to_rgb().to_ndarray() for f in container.decode(video=0)]
    hashes = [hashlib.sha256(np.ascontiguousarray(f).tobytes()).hexdigest() for f in frames]
    assert hashes == list(golden["video_frame_sha256"])
    gen = Generator().eval()
    fill_module(gen, "edtalk")
    x = ((torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0 - 0.5) * 2.0).contiguous()
    with torch.no_grad():
        ed_neu = gen.compute_alpha_D(x[168:])[0]
    np.testing.assert_allclose(ed_neu.numpy(), golden["av_ed_neu"][168:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("bug", "failing"),
    [
        ("floor", {"audio2lip.mel_windows", "audio2lip.output", "audio2lip.lip_smooth"}),
        ("no_preemphasis", {"audio2lip.mel", "audio2lip.mel_windows", "audio2lip.output", "audio2lip.lip_smooth"}),
    ],
)
def test_kit_groups_catch_front_end_bugs(
    a2l_kit: Path, monkeypatch: pytest.MonkeyPatch, bug: str, failing: set[str]
) -> None:
    """Two of the kit's measured front-end bugs (start floored: 7e-2; no pre-emphasis: 0.24) fail their groups."""
    if bug == "floor":
        monkeypatch.setattr(melmod, "window_starts", lambda frames: (16 * (np.arange(frames) - 2)) // 5)
    else:
        monkeypatch.setattr(melmod, "preemphasis", lambda wav: np.asarray(wav, dtype=np.float64))
    results = {r.name: r.passed for r in run_audio2lip_kit(a2l_kit.parent, renders=False)}
    assert {name for name, ok in results.items() if not ok} == failing

"""emotion2vec through funasr's real AutoModel path, offline: tiny model, our batching, load checks."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import random
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from cmet_core.media.audio import load_audio
from cmet_core.modelsets.speech_tiny import make_tiny_emotion2vec
from cmet_core.networks.errors import ModelLoadError
from cmet_core.networks.speech import SpeechEncoder, verify_loaded
from cmet_core.settings import get_settings

if importlib.util.find_spec("funasr") is None:
    pytest.skip("funasr not installed: emotion2vec tests need `pip install 'cmet[speech]'`", allow_module_level=True)

_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}


def _is_local(address: Any) -> bool:
    return not isinstance(address, tuple) or str(address[0]) in _LOCAL_HOSTS


@pytest.fixture(scope="module", autouse=True)
def offline() -> Iterator[list[str]]:
    """No network for this module: hub offline switches on, non-loopback connects and lookups refused.

    Attempts are also recorded, because funasr swallows some exceptions (its update check runs
    in a bare `try/except`); the module fails if anything tried.
    """
    attempts: list[str] = []
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family == getattr(socket, "AF_UNIX", None) or _is_local(address):
            return real_connect(self, address)
        attempts.append(f"connect {address}")
        raise OSError(f"network access in an offline test: {address}")

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if self.family == getattr(socket, "AF_UNIX", None) or _is_local(address):
            return real_connect_ex(self, address)
        attempts.append(f"connect_ex {address}")
        raise OSError(f"network access in an offline test: {address}")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and str(host) not in _LOCAL_HOSTS:
            attempts.append(f"getaddrinfo {host}")
            raise socket.gaierror(f"name lookup in an offline test: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "MODELSCOPE_OFFLINE"):
            mp.setenv(var, "1")
        mp.setenv("MODELSCOPE_CACHE", "/nonexistent/modelscope-cache")
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket.socket, "connect_ex", connect_ex)
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        yield attempts
    assert not attempts, f"network was attempted: {attempts}"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_emotion2vec(tmp_path_factory.mktemp("e2v") / "emotion2vec-tiny", seed=0)


@pytest.fixture(scope="module")
def encoder(tiny_dir: Path) -> SpeechEncoder:
    return SpeechEncoder(tiny_dir, device="cpu")


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    """Noise under a syllable-rate envelope: enough structure that embeddings differ clip to clip."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (3 + seed) * t)
    return (0.3 * envelope * rng.standard_normal(n)).astype(np.float32)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ----------------------------------------------------------------------------------------------
# The tiny model directory


def test_tiny_model_has_the_published_layout(tiny_dir: Path) -> None:
    assert sorted(p.name for p in tiny_dir.iterdir()) == ["config.yaml", "model.pt", "tokens.txt"]
    config = yaml.safe_load((tiny_dir / "config.yaml").read_text())
    assert config["model"] == "Emotion2vec" and config["scope_map"] == ["d2v_model.", "none"]
    conf = config["model_conf"]
    assert conf["embed_dim"] == 32 and conf["normalize"] is True
    audio = conf["modalities"]["audio"]
    assert audio["decoder"]["decoder_dim"] == 16 and audio["extractor_mode"] == "layer_norm"
    state = torch.load(tiny_dir / "model.pt", weights_only=True)["model"]
    assert all(k.startswith("d2v_model.") or k.startswith("proj.") for k in state)
    assert not any(".decoder." in k for k in state)  # like the published checkpoint
    assert state["proj.weight"].shape == (9, 32)
    assert len((tiny_dir / "tokens.txt").read_text().split()) == 9


def test_tiny_model_is_seeded_fast_and_leaves_global_rngs_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    start = time.perf_counter()
    a = make_tiny_emotion2vec(tmp_path / "a", seed=3)
    elapsed = time.perf_counter() - start
    b, c = make_tiny_emotion2vec(tmp_path / "b", seed=3), make_tiny_emotion2vec(tmp_path / "c", seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert elapsed < 3.0
    load = lambda d: torch.load(d / "model.pt", weights_only=True)["model"]  # noqa: E731
    sa, sb, sc = load(a), load(b), load(c)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


# ----------------------------------------------------------------------------------------------
# Loading through funasr


def test_loads_through_funasr_automodel_and_verifies(encoder: SpeechEncoder, tiny_dir: Path) -> None:
    from funasr.models.emotion2vec.model import Emotion2vec

    assert isinstance(encoder.model, Emotion2vec) and not encoder.model.training
    assert encoder.dim == 32 and encoder.min_samples == 400
    on_disk = torch.load(tiny_dir / "model.pt", weights_only=True)["model"]
    assert encoder.verified.num_tensors == len(on_disk) == len(encoder.model.state_dict())
    assert encoder.model.modality_encoders["AUDIO"].decoder is None  # untrained pretraining head removed
    for key, value in encoder.model.state_dict().items():
        assert torch.equal(value, on_disk[key if key.startswith("proj.") else "d2v_model." + key])


def test_embedding_width_comes_from_the_config(tmp_path: Path) -> None:
    wide = SpeechEncoder(make_tiny_emotion2vec(tmp_path / "wide", seed=1, embed_dim=64, heads=4), device="cpu")
    out = wide.embed([_speechlike(0.4, 0), _speechlike(1.1, 1)])
    assert out.shape == (2, 64) and out.dtype == np.float32


def test_loading_leaves_global_state_alone(tiny_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = logging.getLogger()
    handlers, level, threads = list(root.handlers), root.level, torch.get_num_threads()
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    states = random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state()
    with caplog.at_level(logging.WARNING):
        SpeechEncoder(tiny_dir, device="cpu")
    assert [r.getMessage() for r in caplog.records] == []  # not funasr's `WARNING root trust_remote_code: False`
    assert (list(root.handlers), root.level, torch.get_num_threads()) == (handlers, level, threads)
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.random.get_rng_state(), states[2])


# ----------------------------------------------------------------------------------------------
# Embeddings


def test_batch_equals_one_by_one_and_funasr_inference(encoder: SpeechEncoder) -> None:
    real = sorted((get_settings().test_data / "speech" / "MEAD").glob("*/*.wav"))[:2]
    extra = [load_audio(p) for p in real] if len(real) == 2 else [_speechlike(1.3, 8), _speechlike(2.9, 9)]
    clips = [_speechlike(s, i) for i, s in enumerate([0.03, 0.5, 2.0, 3.7])] + extra
    batched = encoder.embed(clips)
    assert batched.shape == (len(clips), 32) and np.isfinite(batched).all()
    single = np.stack([encoder.embed([c])[0] for c in clips])
    for i in range(len(clips)):
        assert _rel(batched[i], single[i]) < 1e-4, f"clip {i}"
    order = [5, 2, 0, 4, 1, 3]
    np.testing.assert_allclose(
        encoder.embed([clips[i] for i in order]), batched[order], rtol=0, atol=1e-4 * np.abs(batched).max()
    )
    # funasr's own single-clip inference (whole-clip layer norm, extract_features, mean) agrees.
    with torch.no_grad():
        for i in (1, 4):
            result, _ = encoder.model.inference(
                [torch.from_numpy(clips[i])], key=["clip"], device="cpu", granularity="utterance"
            )
            assert _rel(batched[i], result[0]["feats"]) < 1e-4
    assert np.min([np.linalg.norm(batched[i] - batched[j]) for i in range(6) for j in range(i)]) > 1e-3


def test_batching_needs_the_padded_frames_zeroed(encoder: SpeechEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the test above: without zeroing, padding leaks through the positional convolutions."""
    clips = [_speechlike(0.3, 7), _speechlike(2.5, 8)]
    exact = encoder.embed([clips[0]])[0]
    monkeypatch.setattr(SpeechEncoder, "_zero_padded_frames", lambda _self, _mask: contextlib.nullcontext())
    assert _rel(encoder.embed(clips)[0], exact) > 1e-3


def test_any_rate_channels_and_container(encoder: SpeechEncoder, test_data: Path) -> None:
    paths = [
        *sorted((test_data / "speech" / "MELD" / "sarcastic").glob("*.wav"))[:1],  # 48 kHz, 6 channels
        *sorted((test_data / "speech" / "gemini").glob("*/*.wav"))[:1],  # 24 kHz mono
        test_data / "video" / "hdtf_RD_Radio1_000_5_cropped.mp4",  # mp3 44.1 kHz stereo in mp4
    ]
    if len(paths) != 3 or not all(p.is_file() for p in paths):
        pytest.skip(f"speech/video fixtures missing under {test_data}")
    from_paths = encoder.embed(paths)
    assert from_paths.shape == (3, 32) and np.isfinite(from_paths).all()
    from_arrays = encoder.embed([load_audio(p) for p in paths])
    np.testing.assert_allclose(from_paths, from_arrays, rtol=0, atol=1e-5)
    np.testing.assert_allclose(encoder.embed([paths[2].read_bytes()]), from_paths[2:], rtol=0, atol=1e-5)


def test_clips_are_capped(tiny_dir: Path) -> None:
    capped = SpeechEncoder(tiny_dir, device="cpu", max_seconds=1.0)
    long = _speechlike(3.0, 2)
    np.testing.assert_allclose(capped.embed([long]), capped.embed([long[:16000]]), rtol=0, atol=1e-6)
    assert _rel(capped.embed([long])[0], SpeechEncoder(tiny_dir, device="cpu").embed([long])[0]) > 1e-3


def test_bad_clips(encoder: SpeechEncoder) -> None:
    assert encoder.embed([]).shape == (0, 32)
    with pytest.raises(ValueError, match=r"clip 1 is too short: 399 samples, emotion2vec needs at least 400 \(25 ms"):
        encoder.embed([_speechlike(1.0, 0), np.zeros(399, np.float32)])
    with pytest.raises(ValueError, match="clip 0: arrays must be 1-D float"):
        encoder.embed([np.zeros((16000, 2), np.float32)])
    with pytest.raises(ValueError, match="clip 0: arrays must be 1-D float mono 16 kHz samples, got int16"):
        encoder.embed([np.zeros(16000, np.int16)])
    read_only = _speechlike(0.5, 3)
    read_only.flags.writeable = False
    assert encoder.embed([read_only]).shape == (1, 32)
    with pytest.raises(ValueError, match="clip 0 contains NaN"):
        encoder.embed([np.full(1000, np.nan, np.float32)])
    with pytest.raises(TypeError, match="sequence of clips"):
        encoder.embed(np.zeros(16000, np.float32))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Directories that must not load: clear ModelLoadErrors naming the file


def _state(directory: Path) -> dict[str, torch.Tensor]:
    return torch.load(directory / "model.pt", weights_only=True)["model"]


def _save_state(directory: Path, state: dict[str, torch.Tensor]) -> None:
    torch.save({"model": state}, directory / "model.pt")


def _drop_key(d: Path) -> None:
    state = _state(d)
    del state["d2v_model.blocks.1.mlp.fc2.bias"]
    _save_state(d, state)


def _extra_key(d: Path) -> None:
    _save_state(d, {**_state(d), "d2v_model.leftover.weight": torch.zeros(3)})


def _reshape(d: Path) -> None:
    _save_state(d, {**_state(d), "proj.weight": torch.zeros(5, 32)})


def _other_prefix(d: Path) -> None:
    _save_state(d, {k.replace("d2v_model.", "encoder.", 1): v for k, v in _state(d).items()})


def _truncate(d: Path) -> None:
    data = (d / "model.pt").read_bytes()
    (d / "model.pt").write_bytes(data[: len(data) // 2])


def _rewrite_config(d: Path, change: Any) -> None:
    config = yaml.safe_load((d / "config.yaml").read_text())
    change(config)
    (d / "config.yaml").write_text(yaml.safe_dump(config))


BROKEN = {
    "no config.yaml": (lambda d: (d / "config.yaml").unlink(), r"{d} has no config\.yaml"),
    "no model.pt": (lambda d: (d / "model.pt").unlink(), r"{d} has no model\.pt \(the weights\)"),
    "empty model.pt": (lambda d: (d / "model.pt").write_bytes(b""), r"{d}/model\.pt is empty"),
    "truncated model.pt": (_truncate, r"{d}/model\.pt is truncated, corrupt or not a weights-only"),
    "missing key": (
        _drop_key,
        r"{d}/model\.pt does not fit .*1 model tensors are not in the file: blocks\.1\.mlp\.fc2\.bias",
    ),
    "extra key": (
        _extra_key,
        r"{d}/model\.pt does not fit .*1 file tensors have no place in the model: d2v_model\.leftover\.weight",
    ),
    "shape mismatch": (
        _reshape,
        r"{d}/model\.pt does not fit .*shapes differ: proj\.weight \(model \(9, 32\), file \(5, 32\)\)",
    ),
    "other key prefix": (_other_prefix, r"{d}/model\.pt does not fit .*75 model tensors are not in the file"),
    "other model": (
        lambda d: _rewrite_config(d, lambda c: c.update(model="Paraformer")),
        r"{d}/config\.yaml is not an emotion2vec config",
    ),
    "no audio modality": (
        lambda d: _rewrite_config(d, lambda c: c["model_conf"].pop("modalities")),
        r"{d}/config\.yaml has no `model_conf\.modalities\.audio`",
    ),
    "funasr cannot build it": (
        lambda d: _rewrite_config(
            d, lambda c: c["model_conf"]["modalities"]["audio"].update(feature_encoder_spec="[(32, 10")
        ),
        r"funasr could not build emotion2vec from {d}: SyntaxError",
    ),
    "embed_dim disagrees": (
        lambda d: _rewrite_config(d, lambda c: c["model_conf"].update(embed_dim=48)),
        r"{d}/model\.pt does not fit .*shapes differ",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_directories_are_refused(tiny_dir: Path, tmp_path: Path, case: str) -> None:
    breaks, message = BROKEN[case]
    broken = tmp_path / "e2v"
    shutil.copytree(tiny_dir, broken)
    breaks(broken)
    with pytest.raises(ModelLoadError, match=message.format(d=broken)):
        SpeechEncoder(broken, device="cpu")


def test_missing_directory_is_refused_without_a_download(tmp_path: Path) -> None:
    with pytest.raises(
        ModelLoadError, match=r"emotion2vec model directory .*/absent does not exist \(nothing is downloaded"
    ):
        SpeechEncoder(tmp_path / "absent", device="cpu")


def test_values_that_differ_after_loading_are_refused(encoder: SpeechEncoder, tiny_dir: Path) -> None:
    weights = _state(tiny_dir)
    weights["d2v_model.blocks.0.attn.proj.bias"] = weights["d2v_model.blocks.0.attn.proj.bias"] + 1e-3
    with pytest.raises(
        ModelLoadError, match=r"model\.pt: after loading, the model's tensors differ .*: blocks\.0\.attn\.proj\.bias"
    ):
        verify_loaded(encoder.model, weights, ["d2v_model.", "none"], tiny_dir / "model.pt")


# ----------------------------------------------------------------------------------------------
# The published model, when a model set on this machine holds it


def _published_model_dir() -> Path | None:
    for config in sorted(get_settings().resolved_models_dir.glob("*/emotion2vec/config.yaml")):
        conf = yaml.safe_load(config.read_text()).get("model_conf", {})
        if conf.get("embed_dim") == 1024:
            return config.parent
    return None


@pytest.mark.slow
def test_published_model_reproduces_the_official_features(request: pytest.FixtureRequest) -> None:
    """Our padded batch on emotion2vec_plus_large equals the features C-MET's official code extracted."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("full-size emotion2vec (about 10 s on CPU); run with -m slow")
    model_dir = _published_model_dir()
    data = get_settings().test_data
    if model_dir is None:
        pytest.skip(
            f"no 1024-d emotion2vec in a model set under {get_settings().resolved_models_dir} (run `cmet models pull`)"
        )
    pairs = [
        (w, data / "e2v" / w.relative_to(data / "speech").with_suffix(".npy"))
        for w in sorted((data / "speech").glob("*/*/*.wav"))
    ]
    pairs = [(w, f) for w, f in pairs if f.is_file()][:8]
    if not pairs:
        pytest.skip(f"no speech clip with an official feature under {data}")
    ours = SpeechEncoder(model_dir, device="cpu").embed([w for w, _ in pairs])
    for row, (wav, feature) in zip(ours, pairs, strict=True):
        official = np.load(feature)
        cosine = float(row @ official / (np.linalg.norm(row) * np.linalg.norm(official)))
        assert cosine > 0.999, f"{wav.name}: cosine {cosine:.5f} with {feature}"

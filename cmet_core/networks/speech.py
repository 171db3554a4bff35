"""emotion2vec+ utterance embeddings: loaded through funasr's own `AutoModel`, verified, batched by us.

Why each part is here:

* Loading goes through funasr's real path (`AutoModel(model=DIR, disable_update=True)`) so the
  network is exactly the one funasr builds for the published `emotion2vec_plus_large`
  (`config.yaml` + `model.pt`). A directory that does not exist never reaches funasr, which would
  otherwise try to download a model by that name.
* funasr's loader fails silently (a missing key is a printed warning, a shape mismatch is
  skipped, a missing weight file is a printed error) and the model then runs on random weights.
  After loading we compare every tensor of the model with the file (count, shapes, digest) and
  raise `ModelLoadError` otherwise.
* The published config declares a pretraining decoder whose weights `model.pt` does not carry
  (funasr's "miss key in ckpt: modality_encoders.AUDIO.decoder..." warnings). Inference never
  uses it, so it is removed after loading; then model and file must match exactly.
* funasr's own `batch_size` gave no speed-up on CPU, so batching is ours: clips are padded and a
  padding mask is passed. funasr's positional convolutions would smear padding into the last
  valid frames, so padded frames are zeroed before each of them; one batched forward then equals
  one-by-one forwards, and pooling averages valid frames only.
* funasr seeds every RNG, sets torch's thread count, configures root logging and prints while
  building; those global side effects are undone.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from cmet_core.media.audio import AudioSource, load_audio
from cmet_core.networks.errors import ModelLoadError, few
from cmet_core.networks.runtime import select_device
from cmet_core.settings import get_settings

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
DEFAULT_MAX_SECONDS = 30.0
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.pt"
TOKENS_FILE = "tokens.txt"
# The published checkpoint stores the backbone under `d2v_model.`; funasr's model has no prefix.
DEFAULT_SCOPE_MAP = ("d2v_model.", "none")
# Keys funasr always tries after the configured scope map (see its `load_pretrained_model`).
_FUNASR_SCOPE_SUFFIX = ("module.", "None")
# The 9 classes of the published emotion2vec+ head, in its order.
EMOTION2VEC_LABELS = ("angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "<unk>")

Clip = np.ndarray | AudioSource


# ----------------------------------------------------------------------------------------------
# Reading and verifying the model directory


def _read_config(path: Path) -> dict[str, Any]:
    """The parsed config.yaml, checked for what funasr needs (it reports missing keys poorly)."""

    if not path.is_file():
        raise ModelLoadError(f"emotion2vec model directory {path.parent} has no {path.name}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"{path} is not readable YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or data.get("model") != "Emotion2vec":
        found = data.get("model") if isinstance(data, dict) else type(data).__name__
        raise ModelLoadError(f"{path} is not an emotion2vec config: `model` is {found!r}, not 'Emotion2vec'")
    conf = data.get("model_conf")
    modalities = conf.get("modalities") if isinstance(conf, dict) else None
    audio = modalities.get("audio") if isinstance(modalities, dict) else None
    if not isinstance(conf, dict) or not isinstance(audio, dict):
        raise ModelLoadError(
            f"{path} has no `model_conf.modalities.audio` section; funasr's Emotion2vec needs the full model_conf"
        )
    if not isinstance(conf.get("embed_dim"), int):
        raise ModelLoadError(f"{path}: `model_conf.embed_dim` is missing or not an integer")
    return data


def _scope_map(config: Mapping[str, Any]) -> list[str]:
    """The configured key-prefix map as funasr reads it (list or comma string), else the published one."""
    raw = config.get("scope_map")
    if raw is None:
        return list(DEFAULT_SCOPE_MAP)
    items = raw.split(",") if isinstance(raw, str) else [str(x) for x in raw]
    if len(items) % 2:
        raise ModelLoadError(f"`scope_map` in config.yaml must list prefix pairs, got {raw!r}")
    return items


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict funasr would read from model.pt, unwrapped the way funasr unwraps it."""
    if not path.is_file():
        raise ModelLoadError(f"emotion2vec model directory {path.parent} has no {path.name} (the weights)")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path} is empty")
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError... for bad files
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"{path} is truncated, corrupt or not a weights-only PyTorch checkpoint: {detail}"
        ) from None
    state: Any = checkpoint
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, Mapping) and key in state:
            state = state[key]
    if not isinstance(state, Mapping):
        raise ModelLoadError(f"{path} holds a {type(state).__name__}, not a state dict")
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelLoadError(f"{path} holds no tensors")
    return tensors


def _source_key(key: str, available: Mapping[str, torch.Tensor], scope_map: Sequence[str]) -> str:
    """The file key funasr loads into model key `key` (its loop: every pair is tried, the last match wins)."""
    pairs = list(scope_map) + list(_FUNASR_SCOPE_SUFFIX)
    found = key
    for i in range(0, len(pairs), 2):
        src = "" if pairs[i].lower() == "none" else pairs[i]
        dst = "" if pairs[i + 1].lower() == "none" else pairs[i + 1]
        if dst == "" and src + key in available:
            found = src + key
        elif key.startswith(dst) and key.replace(dst, src, 1) in available:
            found = key.replace(dst, src, 1)
    return found


def _digest(tensors: Sequence[tuple[str, torch.Tensor]]) -> str:
    """sha256 over names, dtypes, shapes and bytes, in the given order."""
    h = hashlib.sha256()
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


@dataclass(frozen=True)
class WeightCheck:
    """What the load check found: tensor count and the sha256 both sides agreed on."""

    num_tensors: int
    digest: str


def verify_loaded(
    model: torch.nn.Module, weights: Mapping[str, torch.Tensor], scope_map: Sequence[str], path: Path
) -> WeightCheck:
    """Refuse a model whose tensors are not exactly the file's: missing, unused, reshaped or different."""
    state = model.state_dict()
    mapping = {k: _source_key(k, weights, scope_map) for k in state}
    missing = [k for k, src in mapping.items() if src not in weights]
    used = set(mapping.values())
    unused = sorted(k for k in weights if k not in used)
    reshaped = [
        f"{k} (model {tuple(state[k].shape)}, file {tuple(weights[mapping[k]].shape)})"
        for k in state
        if mapping[k] in weights and weights[mapping[k]].shape != state[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} model tensors are not in the file: {few(missing)}")
    if reshaped:
        problems.append(f"{len(reshaped)} shapes differ: {few(reshaped)}")
    if unused:
        problems.append(f"{len(unused)} file tensors have no place in the model: {few(unused)}")
    if problems:
        raise ModelLoadError(
            f"{path} does not fit the model its config.yaml describes ({len(state)} tensors in the model, "
            f"{len(weights)} in the file): " + "; ".join(problems)
        )
    names = sorted(state)
    got = _digest([(k, state[k]) for k in names])
    want = _digest([(k, weights[mapping[k]].to(state[k].dtype)) for k in names])
    if got != want:
        differ = [k for k in names if not torch.equal(state[k].cpu(), weights[mapping[k]].to(state[k].dtype))]
        raise ModelLoadError(
            f"{path}: after loading, the model's tensors differ from the file's (digest mismatch): {few(differ)}"
        )
    return WeightCheck(num_tensors=len(names), digest=want)


def _audio_encoder(model: torch.nn.Module) -> Any:
    """funasr's AUDIO modality encoder; funasr is untyped, so its attributes are unknown to mypy."""
    encoders: Any = model.modality_encoders
    return encoders["AUDIO"]


def _drop_untrained_decoder(
    model: torch.nn.Module, weights: Mapping[str, torch.Tensor], scope_map: Sequence[str]
) -> None:
    """Remove the pretraining decoder when the file has no weights for it (the published case).

    Inference never calls it, and left in place it would be the one randomly initialised part;
    without it the model holds exactly the file's tensors. Passing `model_conf` to `AutoModel` to
    drop it is not an option: funasr then skips reading config.yaml altogether.
    """
    audio = _audio_encoder(model)
    if getattr(audio, "decoder", None) is None:
        return
    keys = [f"modality_encoders.AUDIO.decoder.{k}" for k in audio.decoder.state_dict()]
    if not any(_source_key(k, weights, scope_map) in weights for k in keys):
        audio.decoder = None


@contextlib.contextmanager
def _contain_funasr() -> Iterator[io.StringIO]:
    """Run funasr's model building without its global side effects; yields what it printed.

    funasr seeds Python, NumPy and torch RNGs, calls `torch.set_num_threads`, calls
    `logging.basicConfig(level=INFO)`, logs one INFO line per tensor on the root logger and prints
    to stdout, and warns `trust_remote_code: False` on the root logger at every load; all of it is
    restored, silenced or captured here. Root logging is held at ERROR (with a placeholder handler, so
    basicConfig does nothing) while this runs: its failures reach us as exceptions.
    """
    printed = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    py_state, np_state = random.getstate(), np.random.get_state()
    threads = torch.get_num_threads()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    root.setLevel(max(level, logging.ERROR))
    try:
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(printed):
            yield printed
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        random.setstate(py_state)
        np.random.set_state(np_state)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if isinstance(device, torch.device):
        return device
    return select_device(device if device is not None else get_settings().device)


# ----------------------------------------------------------------------------------------------
# The encoder


class SpeechEncoder:
    """emotion2vec utterance embeddings (N, D) for clips of any length, rate, channel count or container.

    `max_seconds` caps each clip (its start is kept): cost grows with length and about 30 s
    already gives a stable utterance vector.
    """

    def __init__(
        self,
        model_dir: Path | str,
        *,
        device: str | torch.device | None = None,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        batch_size: int = 8,
        max_batch_seconds: float = 120.0,
    ) -> None:
        if max_seconds <= 0 or batch_size < 1 or max_batch_seconds <= 0:
            raise ValueError("max_seconds, batch_size and max_batch_seconds must be positive")
        self.model_dir = Path(model_dir)
        self.max_seconds = float(max_seconds)
        self.batch_size = int(batch_size)
        self.max_batch_seconds = float(max_batch_seconds)
        self.device = _resolve_device(device)
        self._lock = threading.Lock()
        self.model, self.verified = self._load()
        self.model.to(self.device).eval()
        self._audio = _audio_encoder(self.model)
        emotion2vec: Any = self.model  # funasr's Emotion2vec, untyped beyond nn.Module
        self._normalize = bool(emotion2vec.cfg.get("normalize", False))
        self.dim = int(emotion2vec.cfg.get("embed_dim"))
        self.min_samples = self._min_samples()

    def _load(self) -> tuple[torch.nn.Module, WeightCheck]:
        directory = self.model_dir
        if not directory.is_dir():
            raise ModelLoadError(f"emotion2vec model directory {directory} does not exist (nothing is downloaded here)")
        config = _read_config(directory / CONFIG_FILE)
        weights_path = directory / WEIGHTS_FILE
        weights = _read_weights(weights_path)
        scope_map = _scope_map(config)
        with _contain_funasr() as printed:
            try:
                from funasr import AutoModel  # deferred: funasr
            except ImportError as exc:
                raise ModelLoadError(
                    f"cannot load {directory}: funasr is not installed (pip install 'cmet[speech]'): {exc}"
                ) from None
            try:
                auto = AutoModel(
                    model=str(directory),
                    disable_update=True,
                    disable_pbar=True,
                    device="cpu",
                    ncpu=torch.get_num_threads(),
                    hub="ms",
                    init_param=str(weights_path),
                    scope_map=list(scope_map),
                )
            except Exception as exc:  # funasr raises many types; the message is what matters
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                said = printed.getvalue().strip()
                raise ModelLoadError(
                    f"funasr could not build emotion2vec from {directory}: {type(exc).__name__}: {first}"
                    + (f" (funasr printed: {said[-300:]})" if said else "")
                ) from None
        if printed.getvalue().strip():
            log.debug("funasr while loading %s: %s", directory, printed.getvalue().strip())
        model = auto.model
        _drop_untrained_decoder(model, weights, scope_map)
        check = verify_loaded(model, weights, scope_map, weights_path)
        log.info(
            "emotion2vec %s loaded: %d tensors verified, sha256 %s", directory, check.num_tensors, check.digest[:16]
        )
        return model, check

    def _min_samples(self) -> int:
        """Shortest clip that yields one frame through the convolutional feature extractor."""
        needed = 1
        for _dim, kernel, stride in reversed(list(self._audio.feature_enc_layers)):
            needed = (needed - 1) * stride + kernel
        return needed

    # -- inputs --------------------------------------------------------------------------------

    def _prepare(self, index: int, clip: Clip) -> np.ndarray:
        """16 kHz mono float32, capped; arrays are taken to be 16 kHz mono already."""
        limit = int(round(self.max_seconds * SAMPLE_RATE))
        if isinstance(clip, np.ndarray):
            if clip.ndim != 1 or not np.issubdtype(clip.dtype, np.floating):
                raise ValueError(
                    f"clip {index}: arrays must be 1-D float mono 16 kHz samples, got {clip.dtype} {clip.shape}"
                )
            audio = np.array(clip[:limit], dtype=np.float32)  # a copy: never hold on to the caller's buffer
        else:
            audio = load_audio(clip, SAMPLE_RATE, max_seconds=self.max_seconds)[:limit]
        if audio.size < self.min_samples:
            raise ValueError(
                f"clip {index} is too short: {audio.size} samples, emotion2vec needs at least "
                f"{self.min_samples} ({1000 * self.min_samples / SAMPLE_RATE:.0f} ms at 16 kHz)"
            )
        if not np.isfinite(audio).all():
            raise ValueError(f"clip {index} contains NaN or infinite samples")
        return audio

    def _batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices grouped by similar length (little padding), within the count and padded-length budgets."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        budget = self.max_batch_seconds * SAMPLE_RATE
        batches: list[list[int]] = []
        for i in order:
            current = batches[-1] if batches else None
            if current is None or len(current) >= self.batch_size or (len(current) + 1) * lengths[i] > budget:
                batches.append([i])
            else:
                current.append(i)
        return batches

    # -- the forward ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _zero_padded_frames(self, sample_padding: torch.Tensor | None) -> Iterator[None]:
        """While active, padded frames are zeroed before each positional convolution.

        A lone clip sees the convolution's zero padding past its end; in a batch, the frames past
        a short clip's end hold features of its padding, which the kernel would mix into the last
        valid frames. Zeroing them makes the batched result equal the lone one.
        """
        if sample_padding is None:
            yield
            return
        cached: dict[int, torch.Tensor] = {}

        def hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            x = args[0]  # (B, C, frames)
            frames = x.shape[-1]
            if frames not in cached:
                shape_only = x.new_zeros(x.shape[0], frames)
                cached[frames] = self._audio.convert_padding_mask(shape_only, sample_padding)
            return (x.masked_fill(cached[frames].unsqueeze(1), 0.0), *args[1:])

        convs = [m for m in self._audio.relative_positional_encoder.modules() if isinstance(m, torch.nn.Conv1d)]
        handles = [m.register_forward_pre_hook(hook) for m in convs]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _forward(self, clips: Sequence[np.ndarray]) -> torch.Tensor:
        """Pooled (B, D) embeddings of one padded batch, as funasr's inference would give one by one."""
        longest = max(len(c) for c in clips)
        source = torch.zeros(len(clips), longest)
        padding = torch.zeros(len(clips), longest, dtype=torch.bool)
        for row, clip in enumerate(clips):
            wav = torch.from_numpy(clip)
            if self._normalize:
                wav = F.layer_norm(wav, wav.shape)  # what funasr does to each whole clip
            source[row, : len(clip)] = wav
            padding[row, len(clip) :] = True
        sample_padding = padding.to(self.device) if bool(padding.any()) else None
        emotion2vec: Any = self.model  # funasr's Emotion2vec, untyped beyond nn.Module
        with self._zero_padded_frames(sample_padding):
            out = emotion2vec.extract_features(source.to(self.device), padding_mask=sample_padding)
        x: torch.Tensor = out["x"]
        frame_padding: torch.Tensor | None = out["padding_mask"]
        if frame_padding is None or not bool(frame_padding.any()):
            return x.float().mean(dim=1)
        keep = ~frame_padding.bool()
        total = x.float().masked_fill(~keep.unsqueeze(-1), 0.0).sum(dim=1)
        return total / keep.sum(dim=1, keepdim=True).to(total.dtype)

    def embed(self, clips: Sequence[Clip]) -> np.ndarray:
        """Utterance embeddings (N, D) float32, row i for clip i.

        A clip is a path, bytes or file object (decoded, mixed to mono, resampled to 16 kHz), or a
        1-D float array already at 16 kHz. Batches are ours: the result does not depend on how clips
        are grouped.
        """
        if isinstance(clips, (np.ndarray, str, bytes, os.PathLike)):
            raise TypeError("embed() takes a sequence of clips; wrap a single clip in a list")
        audio = [self._prepare(i, clip) for i, clip in enumerate(clips)]
        result = np.zeros((len(audio), self.dim), dtype=np.float32)
        # no_grad, not inference_mode: funasr caches alibi biases across calls, and inference
        # tensors in that cache would break any later forward run with autograd on.
        with self._lock, torch.no_grad():
            for batch in self._batches([len(a) for a in audio]):
                pooled = self._forward([audio[i] for i in batch])
                result[batch] = pooled.cpu().numpy()
        return result

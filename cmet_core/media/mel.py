"""The Audio2Lip front end (C-MET `get_mel`, conformance kit `audio2lip/README.md`): speech -> one mel window per frame.

Written with numpy alone (no librosa, no scipy): the kit's steps are a float64 pre-emphasis, a
zero-padded periodic-Hann STFT, a Slaney mel filterbank and a dB normalisation, all a few lines of
numpy, and the kit measured numpy.fft equal to scipy.fft bit for bit on this mel. librosa would
add a heavy dependency whose defaults moved between versions (reflect padding up to 0.8, resampy up
to 0.9), which is what the goldens are sensitive to; here each choice is explicit. The traps the
original sets are kept on purpose: the tail past the last whole video frame is dropped, the mel
stays float64 until the windows are cast, window starts truncate toward zero, and rows past either
end are clamped (the edge frames repeat), not padded.

Input at another rate is averaged to mono in float32 and resampled with soxr "HQ", then cut or
zero-padded to ceil(n * 16000 / rate) samples: what librosa >= 0.10 `load(path, sr=16000)` does
(`resampler_audio2lip.json`; another resampler moves the lip track by up to 2e-3). `read_speech` reads
through soundfile as the original does; `media.audio.load_audio` (PyAV, any container) averages
channels in float64: the same for one or two channels, a few float32 ulps off for more.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import numpy as np
import soundfile
import soxr

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
N_FFT = 800
HOP = 200
NUM_MELS = 80
FMIN, FMAX = 55.0, 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB, REF_LEVEL_DB = -100.0, 20.0
MAX_ABS = 4.0
WINDOW = 16  # mel frames per video frame's window


def to_speech_rate(samples: np.ndarray, rate: int) -> np.ndarray:
    """(n,) or (channels, n) samples at `rate` -> mono float32 at 16 kHz, as the original loads them."""
    y = np.asarray(samples, dtype=np.float32)
    if y.ndim == 2:
        y = np.mean(y, axis=0, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected (n,) or (channels, n) samples, got shape {samples.shape}")
    if rate == SAMPLE_RATE:
        return np.ascontiguousarray(y)
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    out = np.asarray(soxr.resample(y, rate, SAMPLE_RATE, quality="HQ"), dtype=np.float32)
    n = int(math.ceil(y.shape[0] * (float(SAMPLE_RATE) / rate)))
    if out.shape[0] >= n:
        return np.ascontiguousarray(out[:n])
    return np.concatenate([out, np.zeros(n - out.shape[0], np.float32)])


def read_speech(path: str | os.PathLike[str]) -> np.ndarray:
    """A sound file (wav, flac, ...) as the original reads it: float32 (int16 / 32768), mono, 16 kHz."""
    data, rate = soundfile.read(os.fspath(path), dtype="float32", always_2d=True)
    return to_speech_rate(data.T, int(rate))


def num_video_frames(num_samples: int) -> int:
    """The audio sets the video length: whole 40 ms frames at 25 fps; the tail is dropped."""
    return num_samples // SAMPLES_PER_FRAME


def preemphasis(wav: np.ndarray) -> np.ndarray:
    """y[0] = x[0], y[n] = x[n] - 0.97 x[n-1], in float64 (the original promotes its float32 input)."""
    x = np.asarray(wav, dtype=np.float64)
    y = x.copy()
    y[1:] = x[1:] - PREEMPHASIS * x[:-1]
    return y


def stft_magnitude(y: np.ndarray) -> np.ndarray:
    """|STFT| (401, F) float64: periodic Hann 800, centred with zero padding of 400, hop 200."""
    n = np.arange(N_FFT, dtype=np.float64)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)
    padded = np.pad(np.asarray(y, dtype=np.float64), N_FFT // 2, mode="constant")
    count = 1 + (padded.shape[0] - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:count]
    return np.abs(np.fft.rfft(frames * window, axis=1)).T


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    logstep = np.log(6.4) / 27.0
    linear = f / (200.0 / 3.0)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / logstep, linear)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    logstep = np.log(6.4) / 27.0
    linear = (200.0 / 3.0) * m
    return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), linear)


def mel_basis() -> np.ndarray:
    """(80, 401) float32: Audio2Lip's filterbank (n_fft 800, 55..7600 Hz)."""
    return slaney_mel_basis(N_FFT, NUM_MELS, FMIN, FMAX)


@lru_cache(maxsize=4)
def slaney_mel_basis(n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, n_fft/2+1) float32 Slaney-normalised triangles at 16 kHz, rounded to float32 before and after
    the area factor (librosa's `filters.mel` with its defaults; PD-FGC's front end uses it too)."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(fmin)), _hz_to_mel(np.array(fmax)), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / SAMPLE_RATE)
    basis = np.zeros((n_mels, bins.shape[0]), dtype=np.float32)
    for i in range(n_mels):
        lower = (bins - edges[i]) / (edges[i + 1] - edges[i])
        upper = (edges[i + 2] - bins) / (edges[i + 2] - edges[i + 1])
        basis[i] = np.maximum(0.0, np.minimum(lower, upper))
    basis *= (2.0 / (edges[2:] - edges[:n_mels]))[:, None]
    basis.setflags(write=False)
    return basis


def normalise_db(mel_amp: np.ndarray) -> np.ndarray:
    """Amplitude -> dB relative to 20 dB -> [-4, 4], clipped; float64."""
    min_level = np.exp(MIN_LEVEL_DB / 20.0 * np.log(10.0))
    db = 20.0 * np.log10(np.maximum(min_level, mel_amp)) - REF_LEVEL_DB
    scaled = 2.0 * MAX_ABS * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS
    out: np.ndarray = np.clip(scaled, -MAX_ABS, MAX_ABS)
    return out


def mel_spectrogram(wav: np.ndarray) -> tuple[np.ndarray, int]:
    """16 kHz mono waveform -> (full mel (F, 80) float64, T video frames); the audio is cropped to 640·T samples."""
    frames = num_video_frames(wav.shape[0])
    if frames < 1:
        raise ValueError(f"speech shorter than one video frame ({wav.shape[0]} samples < {SAMPLES_PER_FRAME})")
    y = preemphasis(wav[: frames * SAMPLES_PER_FRAME])
    mel_amp = mel_basis() @ stft_magnitude(y)
    return normalise_db(mel_amp).T, frames


def window_starts(frames: int) -> np.ndarray:
    """(T,) first mel row of each video frame's window: 80·(i-2)/25 truncated toward zero (-6, -3 for i = 0, 1)."""
    q = 16 * (np.arange(frames, dtype=np.int64) - 2)
    starts: np.ndarray = np.sign(q) * (np.abs(q) // 5)  # trunc(16·(i-2)/5), not floor
    return starts


def window_rows(frames: int, mel_frames: int) -> np.ndarray:
    """(T, 16) mel rows of each window, clamped into [0, F-1] so the edges repeat the first or last frame."""
    rows: np.ndarray = np.clip(window_starts(frames)[:, None] + np.arange(WINDOW), 0, mel_frames - 1)
    return rows


def mel_windows(mel: np.ndarray, frames: int) -> np.ndarray:
    """(T, 80, 16) float32: each frame's 16 rows of the float64 mel, bands x time, cast once at the end."""
    rows = window_rows(frames, mel.shape[0])
    return np.ascontiguousarray(mel[rows].transpose(0, 2, 1).astype(np.float32))


def lip_windows(wav: np.ndarray) -> np.ndarray:
    """16 kHz mono waveform -> the Audio2Lip input windows (T, 80, 16) float32."""
    mel, frames = mel_spectrogram(wav)
    return mel_windows(mel, frames)

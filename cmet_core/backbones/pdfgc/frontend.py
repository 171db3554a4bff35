"""PD-FGC's audio front end (kit SPEC_pdfgc.md section 4): 16 kHz speech -> one (1, 80, 20) mel window
per video frame. numpy only: the pinned `lws` STFT and librosa's filterbank are each a few lines.

The traps kept on purpose: the RMS normalisation is over the whole clip (cutting a clip changes
every value, T14); the STFT puts 1120 zeros in front, so mel frame m is centred on sample
`160 m - 480` (T15); its window is half a sine (lws's synthesis-matched window), not a Hann.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from cmet_core.media.mel import slaney_mel_basis

N_FFT = 1280
HOP = 160
FRONT_PAD = N_FFT - HOP  # lws "speech" mode: 1120 zeros before the first sample
NUM_MELS = 80
FMIN, FMAX = 125.0, 7600.0
TARGET_RMS = 0.1
MEL_PER_FRAME = 4  # 40 ms video frames over 10 ms mel frames
WINDOW = 20  # mel frames per window


def normalise(wav: np.ndarray) -> np.ndarray:
    """Scale a float32 clip to an RMS of 0.1 (floor 1e-4 on the measured RMS), all in float32."""
    x = np.asarray(wav, dtype=np.float32)
    rms = max(np.float32(1e-4), np.sqrt(np.mean(x**2)))
    out: np.ndarray = x * (np.float32(TARGET_RMS) / rms)
    return out


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    """sqrt(h[n] / w[n mod hop]): a half-sample-offset Hann over the overlap-add of its hop shifts."""
    n = np.arange(N_FFT, dtype=np.float64)
    hann = 0.5 * (1.0 - np.cos(2.0 * np.pi * (2.0 * n + 1.0) / (2.0 * N_FFT)))
    overlap = hann.reshape(N_FFT // HOP, HOP).sum(axis=0)
    window: np.ndarray = np.sqrt(hann / overlap[np.arange(N_FFT) % HOP])
    window.setflags(write=False)
    return window


def stft_magnitude(wav: np.ndarray) -> np.ndarray:
    """|STFT| (641, M) float64 with lws 1.2.7's framing: M = ceil(n / 160) + 7 frames."""
    x = np.asarray(wav, dtype=np.float64)
    tail = (-x.shape[0]) % HOP
    padded = np.concatenate([np.zeros(FRONT_PAD), x, np.zeros(tail + N_FFT)])
    count = (FRONT_PAD + x.shape[0] + tail) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:count]
    return np.abs(np.fft.rfft(frames * _window(), axis=1)).T


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """Normalised float32 clip -> (M, 80) float32 in [0, 1]."""
    amp = slaney_mel_basis(N_FFT, NUM_MELS, FMIN, FMAX) @ stft_magnitude(wav)
    db = 20.0 * np.log10(np.maximum(1e-5, amp)) - 20.0
    out: np.ndarray = np.clip((db + 100.0) / 100.0, 0.0, 1.0).astype(np.float32).T
    return out


def mel_windows(mel: np.ndarray) -> np.ndarray:
    """(M, 80) mel -> (N, 1, 80, 20) windows, N = M // 4 - 4: frame i reads mel rows 4i .. 4i+19."""
    count = mel.shape[0] // MEL_PER_FRAME - 4
    if count < 1:
        raise ValueError(f"speech too short for one video frame ({mel.shape[0]} mel frames)")
    rows = np.arange(count)[:, None] * MEL_PER_FRAME + np.arange(WINDOW)[None, :]
    return np.ascontiguousarray(mel[rows].transpose(0, 2, 1)[:, None])


def speech_windows(wav: np.ndarray) -> np.ndarray:
    """16 kHz mono float32 speech (a whole clip) -> the audio encoder's windows, one per output frame."""
    return mel_windows(mel_spectrogram(normalise(wav)))

"""C-MET connector (`Connector_exp`, SPEC.md §5) and its windowed autoregressive loop (§7.2).

The connector reads the previous window's predicted deltas (`ref`), the speech semantic vector
and the current window's expression coefficients, and predicts per-frame expression deltas.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ConnectorConfig:
    """Defaults are the published `configs/inference.yaml`."""

    window: int = 5
    hidden: int = 1024
    layers: int = 4
    heads: int = 4
    ffn: int = 1024
    dropout: float = 0.1
    exp_dim: int = 10
    speech_dim: int = 1024
    max_positions: int = 512

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


# Tiny, but it reads real emotion2vec+ large vectors (1024-d), so the built-in emotion library
# and libraries users build work unchanged on tiny sets.
TINY_CONNECTOR = ConnectorConfig(hidden=64, layers=2, heads=2, ffn=64, speech_dim=1024, max_positions=16)

# (cin, cout, kernel, stride, padding, residual) of the 13 blocks; the last two widths follow `hidden`.
_BLOCKS_HEAD: tuple[tuple[int, int, int, int, int, bool], ...] = (
    (1, 4, 3, 1, 1, False),
    (4, 8, 3, 2, 1, False),
    (8, 8, 3, 1, 1, True),
    (8, 8, 3, 1, 1, True),
    (8, 16, 3, 2, 1, False),
    (16, 16, 3, 1, 1, True),
    (16, 16, 3, 1, 1, True),
    (16, 32, 2, 2, 0, False),
)


def _encoder_blocks(hidden: int) -> list[tuple[int, int, int, int, int, bool]]:
    blocks = list(_BLOCKS_HEAD)
    widths = [32, 64, 128, 256, 512, hidden]
    for cin, cout in pairwise(widths):
        blocks.append((cin, cout, 1, 1, 0, False))
    return blocks


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int, p: int, residual: bool, act: nn.Module) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv1d(cin, cout, k, s, p), nn.BatchNorm1d(cout))
        self.residual = residual
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv_block(x)
        if self.residual:
            out = out + x
        activated: torch.Tensor = self.act(out)
        return activated


def _scalar_sequence_encoder(hidden: int) -> nn.Sequential:
    """Treats each 10-d coefficient vector as a 1-channel signal and maps it to one `hidden` token."""
    blocks = _encoder_blocks(hidden)
    return nn.Sequential(
        *[ConvBlock(*spec, act=nn.Tanh() if i == len(blocks) - 1 else nn.ReLU()) for i, spec in enumerate(blocks)]
    )


class SpeakerEncoder(nn.Module):
    def __init__(self, speech_dim: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(speech_dim, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed: torch.Tensor = self.norm(F.gelu(self.proj(x.squeeze(1))))
        return normed.unsqueeze(1)


def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """Sinusoidal position table in float32 torch ops, as the checkpoint stores it."""
    position = torch.arange(0, positions, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    pe = torch.zeros(positions, dim)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    return pe.unsqueeze(0)


class PositionTable(nn.Module):
    pe: torch.Tensor

    def __init__(self, positions: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("pe", sinusoid_table(positions, dim))


class FusionTransformer(nn.Module):
    """Token assembly (ref, speaker, expression) with position and modality embeddings, then a post-norm encoder."""

    modality_ids: torch.Tensor

    def __init__(self, cfg: ConnectorConfig) -> None:
        super().__init__()
        self.window = cfg.window
        self.position_r = PositionTable(cfg.max_positions, cfg.hidden)
        self.position_e = PositionTable(cfg.max_positions, cfg.hidden)
        self.modality = nn.Embedding(4, cfg.hidden)
        layer = nn.TransformerEncoderLayer(
            cfg.hidden, cfg.heads, cfg.ffn, cfg.dropout, activation="relu", batch_first=True, norm_first=False
        )
        self.transformer_encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        modality_ids = torch.tensor([1] * cfg.window + [2] + [3] * cfg.window)
        self.register_buffer("modality_ids", modality_ids, persistent=False)
        self.token_dropout = nn.Dropout(cfg.dropout)

    def tokens(self, ref: torch.Tensor, speaker: torch.Tensor, exp: torch.Tensor) -> torch.Tensor:
        t = self.window
        ref = ref + self.position_r.pe[:, :t]
        exp = exp + self.position_e.pe[:, :t]
        modality: torch.Tensor = self.modality(self.modality_ids)
        return torch.cat([ref, speaker, exp], dim=1) + modality

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        encoded: torch.Tensor = self.transformer_encoder(self.token_dropout(tokens))
        return encoded


class Projector(nn.Module):
    def __init__(self, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.projector = nn.Sequential(nn.Linear(hidden, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected: torch.Tensor = self.projector(x)
        return projected


@dataclass
class ConnectorOutput:
    delta: torch.Tensor  # (B*T, exp_dim), sample-major
    ref_emb: torch.Tensor
    speech_emb: torch.Tensor
    exp_emb: torch.Tensor
    tokens_in: torch.Tensor
    tokens_out: torch.Tensor


class Connector(nn.Module):
    def __init__(self, cfg: ConnectorConfig = ConnectorConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.exp_encoder = _scalar_sequence_encoder(cfg.hidden)
        self.ref_encoder = _scalar_sequence_encoder(cfg.hidden)
        self.Norm = nn.LayerNorm(cfg.hidden)
        self.speaker_encoder = SpeakerEncoder(cfg.speech_dim, cfg.hidden)
        self.fusion_transformer_encoder = FusionTransformer(cfg)
        self.projector = Projector(cfg.hidden, cfg.exp_dim)

    def _embed_sequence(self, encoder: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """Each frame's code, read as a 1-channel signal, to one token. The strides bring a 10-wide code
        (EDTalk) to one position; a wider one (PD-FGC's 30: 4 positions) is averaged over what is left,
        which for one position is that position exactly (decision 0016)."""
        b, t, d = x.shape
        out: torch.Tensor = encoder(x.reshape(b * t, 1, d)).mean(dim=-1)
        normed: torch.Tensor = self.Norm(out)
        return normed.reshape(b, t, -1)

    def run(self, ref: torch.Tensor, speech: torch.Tensor, exp: torch.Tensor) -> ConnectorOutput:
        """ref (B,T,exp), speech (B,1,speech_dim), exp (B,T,exp) -> deltas and the internals."""
        t = self.cfg.window
        if ref.shape[1] != t or exp.shape[1] != t:
            raise ValueError(f"connector windows must be exactly {t} frames, got {ref.shape[1]} and {exp.shape[1]}")
        ref_emb = self._embed_sequence(self.ref_encoder, ref)
        speech_emb = self.speaker_encoder(speech)
        exp_emb = self._embed_sequence(self.exp_encoder, exp)
        tokens_in = self.fusion_transformer_encoder.tokens(ref_emb, speech_emb, exp_emb)
        tokens_out = self.fusion_transformer_encoder(tokens_in)
        delta = self.projector(tokens_out[:, t + 1 :]).reshape(-1, self.cfg.exp_dim)
        return ConnectorOutput(delta, ref_emb, speech_emb, exp_emb, tokens_in, tokens_out)

    def forward(self, ref: torch.Tensor, speech: torch.Tensor, exp: torch.Tensor) -> torch.Tensor:
        return self.run(ref, speech, exp).delta


def run_windows(connector: Connector, exp: torch.Tensor, speech: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The autoregressive loop of §7.2 over whole windows of `exp` (N,exp_dim), N a multiple of T.

    Each window sees the previous window's predicted *delta* as its reference (zeros at first).
    `speech` is (1,1,speech_dim) for every window, or (N/T,1,speech_dim): one vector per window
    (a timeline), the feedback carried across them all the same.
    Returns the edited coefficients `exp + delta` and the deltas, both (N, exp_dim).
    """
    t = connector.cfg.window
    n = exp.shape[0]
    if n % t:
        raise ValueError(f"run_windows needs a multiple of {t} frames, got {n}")
    if speech.shape[0] not in (1, n // t):
        raise ValueError(f"run_windows needs one speech vector, or one per window ({n // t}), got {speech.shape[0]}")
    ref = exp.new_zeros(1, t, exp.shape[1])
    deltas: list[torch.Tensor] = []
    for i in range(0, n, t):
        window_speech = speech if speech.shape[0] == 1 else speech[i // t : i // t + 1]
        delta: torch.Tensor = connector(ref, window_speech, exp[None, i : i + t])
        deltas.append(delta)
        ref = delta[None]
    delta_all = torch.cat(deltas) if deltas else exp.new_zeros(0, exp.shape[1])
    return exp + delta_all, delta_all

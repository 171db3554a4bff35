"""A tiny random emotion2vec model directory in the published layout, for tests and `make-tiny`.

Kept apart from `speech.py` because serving never needs it; it writes files funasr's real
`AutoModel` path loads, so tests exercise the production loader offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmet_core.networks.speech import (
    CONFIG_FILE,
    DEFAULT_SCOPE_MAP,
    EMOTION2VEC_LABELS,
    TOKENS_FILE,
    WEIGHTS_FILE,
)


def _model_conf(
    embed_dim: int, depth: int, heads: int, prenet_depth: int, conv_dim: int, mlp_ratio: float
) -> dict[str, Any]:
    """`model_conf` with every key of the published emotion2vec config (funasr has no defaults)."""
    return {
        "loss_beta": 0.0,
        "loss_scale": None,
        "depth": depth,
        "start_drop_path_rate": 0.0,
        "end_drop_path_rate": 0.0,
        "num_heads": heads,
        "norm_eps": 1e-05,
        "norm_affine": True,
        "encoder_dropout": 0.1,
        "post_mlp_drop": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "dropout_input": 0.0,
        "layerdrop": 0.05,
        "embed_dim": embed_dim,
        "mlp_ratio": mlp_ratio,
        "layer_norm_first": False,
        "average_top_k_layers": depth,
        "end_of_block_targets": False,
        "clone_batch": 8,
        "layer_norm_target_layer": False,
        "batch_norm_target_layer": False,
        "instance_norm_target_layer": True,
        "instance_norm_targets": False,
        "layer_norm_targets": False,
        "ema_decay": 0.999,
        "ema_same_dtype": True,
        "log_norms": True,
        "ema_end_decay": 0.99999,
        "ema_anneal_end_step": 20000,
        "ema_encoder_only": False,
        "max_update": 100000,
        "extractor_mode": "layer_norm",
        "shared_decoder": None,
        "min_target_var": 0.1,
        "min_pred_var": 0.01,
        "supported_modality": "AUDIO",
        "mae_init": False,
        "seed": 1,
        "skip_ema": False,
        "cls_loss": 1.0,
        "recon_loss": 0.0,
        "d2v_loss": 1.0,
        "decoder_group": False,
        "adversarial_training": False,
        "adversarial_hidden_dim": 128,
        "adversarial_weight": 0.1,
        "cls_type": "chunk",
        "normalize": True,
        "modalities": {
            "audio": {
                "type": "AUDIO",
                "prenet_depth": prenet_depth,
                "prenet_layerdrop": 0.05,
                "prenet_dropout": 0.1,
                "start_drop_path_rate": 0.0,
                "end_drop_path_rate": 0.0,
                "num_extra_tokens": 10,
                "init_extra_token_zero": True,
                "mask_noise_std": 0.01,
                "mask_prob_min": None,
                "mask_prob": 0.5,
                "inverse_mask": False,
                "mask_prob_adjust": 0.05,
                "keep_masked_pct": 0.0,
                "mask_length": 5,
                "add_masks": False,
                "remove_masks": False,
                "mask_dropout": 0.0,
                "encoder_zero_mask": True,
                "mask_channel_prob": 0.0,
                "mask_channel_length": 64,
                "ema_local_encoder": False,
                "local_grad_mult": 1.0,
                "use_alibi_encoder": True,
                "alibi_scale": 1.0,
                "learned_alibi": False,
                "alibi_max_pos": None,
                "learned_alibi_scale": True,
                "learned_alibi_scale_per_head": True,
                "learned_alibi_scale_per_layer": False,
                "num_alibi_heads": heads,
                "model_depth": depth,
                "decoder": {
                    "decoder_dim": 16,
                    "decoder_groups": 16,
                    "decoder_kernel": 7,
                    "decoder_layers": 4,
                    "input_dropout": 0.1,
                    "add_positions_masked": False,
                    "add_positions_all": False,
                    "decoder_residual": True,
                    "projection_layers": 1,
                    "projection_ratio": 2.0,
                },
                "extractor_mode": "layer_norm",
                "feature_encoder_spec": f"[({conv_dim}, 10, 5)] + [({conv_dim}, 3, 2)] * 4 + [({conv_dim}, 2, 2)] * 2",
                "conv_pos_width": 95,
                "conv_pos_groups": 16,
                "conv_pos_depth": 5,
                "conv_pos_pre_ln": False,
            }
        },
    }


def _tiny_shapes(
    conf: Mapping[str, Any], conv_layers: Sequence[tuple[int, int, int]], vocab: int
) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, role) of every tensor funasr's Emotion2vec holds for `conf`, decoder left out.

    Written from the module structure so that making a tiny model needs no funasr; the load check
    in `SpeechEncoder` is what proves the layout right.
    """
    d = conf["embed_dim"]
    audio = conf["modalities"]["audio"]
    hidden = int(d * conf["mlp_ratio"])
    out: list[tuple[str, tuple[int, ...], str]] = []
    enc = "modality_encoders.AUDIO"
    in_dim = 1
    for i, (dim, kernel, _stride) in enumerate(conv_layers):
        out.append((f"{enc}.local_encoder.conv_layers.{i}.0.weight", (dim, in_dim, kernel), "weight"))
        out += [
            (f"{enc}.local_encoder.conv_layers.{i}.2.1.weight", (dim,), "norm"),
            (f"{enc}.local_encoder.conv_layers.{i}.2.1.bias", (dim,), "bias"),
        ]
        in_dim = dim
    out += [
        (f"{enc}.project_features.1.weight", (in_dim,), "norm"),
        (f"{enc}.project_features.1.bias", (in_dim,), "bias"),
        (f"{enc}.project_features.2.weight", (d, in_dim), "weight"),
        (f"{enc}.project_features.2.bias", (d,), "bias"),
    ]
    kernel = max(3, audio["conv_pos_width"] // audio["conv_pos_depth"])
    for j in range(audio["conv_pos_depth"]):
        out += [
            (
                f"{enc}.relative_positional_encoder.{j + 1}.0.weight",
                (d, d // audio["conv_pos_groups"], kernel),
                "weight",
            ),
            (f"{enc}.relative_positional_encoder.{j + 1}.0.bias", (d,), "bias"),
        ]

    def block(prefix: str) -> list[tuple[str, tuple[int, ...], str]]:
        return [
            (f"{prefix}.norm1.weight", (d,), "norm"),
            (f"{prefix}.norm1.bias", (d,), "bias"),
            (f"{prefix}.attn.qkv.weight", (3 * d, d), "weight"),
            (f"{prefix}.attn.qkv.bias", (3 * d,), "bias"),
            (f"{prefix}.attn.proj.weight", (d, d), "weight"),
            (f"{prefix}.attn.proj.bias", (d,), "bias"),
            (f"{prefix}.norm2.weight", (d,), "norm"),
            (f"{prefix}.norm2.bias", (d,), "bias"),
            (f"{prefix}.mlp.fc1.weight", (hidden, d), "weight"),
            (f"{prefix}.mlp.fc1.bias", (hidden,), "bias"),
            (f"{prefix}.mlp.fc2.weight", (d, hidden), "weight"),
            (f"{prefix}.mlp.fc2.bias", (d,), "bias"),
        ]

    for i in range(audio["prenet_depth"]):
        out += block(f"{enc}.context_encoder.blocks.{i}")
    out += [(f"{enc}.context_encoder.norm.weight", (d,), "norm"), (f"{enc}.context_encoder.norm.bias", (d,), "bias")]
    out.append((f"{enc}.extra_tokens", (1, audio["num_extra_tokens"], d), "token"))
    heads = audio["num_alibi_heads"] if audio["learned_alibi_scale_per_head"] else 1
    out.append((f"{enc}.alibi_scale", (1, 1, heads, 1, 1), "alibi"))
    for i in range(conf["depth"]):
        out += block(f"blocks.{i}")
    if vocab > 0:
        out += [("proj.weight", (vocab, d), "weight"), ("proj.bias", (vocab,), "bias")]
    return out


def make_tiny_emotion2vec(
    directory: Path | str,
    seed: int = 0,
    *,
    embed_dim: int = 32,
    depth: int = 2,
    heads: int = 2,
    prenet_depth: int = 1,
    conv_dim: int = 32,
    mlp_ratio: float = 4.0,
) -> Path:
    """Write a small random emotion2vec directory that funasr's `AutoModel` loads like the published one.

    Same files (`config.yaml`, `model.pt`, `tokens.txt`), same config schema (decoder section
    included), same checkpoint layout (backbone under `d2v_model.`, 9-class head `proj.*`, no
    decoder weights); only the sizes are small. Needs no funasr, and leaves global RNGs alone.
    """
    import yaml

    if embed_dim % 16 or embed_dim % heads or conv_dim < 1:
        raise ValueError("embed_dim must be a multiple of 16 (positional conv groups) and of heads")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    conf = _model_conf(embed_dim, depth, heads, prenet_depth, conv_dim, mlp_ratio=mlp_ratio)
    conv_layers = [(conv_dim, 10, 5)] + [(conv_dim, 3, 2)] * 4 + [(conv_dim, 2, 2)] * 2
    config = {
        "model": "Emotion2vec",
        "model_conf": conf,
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
        "scope_map": list(DEFAULT_SCOPE_MAP),
    }
    gen = torch.Generator().manual_seed(int(seed))
    state: dict[str, torch.Tensor] = {}
    for key, shape, role in _tiny_shapes(conf, conv_layers, vocab=len(EMOTION2VEC_LABELS)):
        if role == "weight":
            fan_in = int(np.prod(shape[1:]))
            value = torch.randn(shape, generator=gen) / fan_in**0.5
        elif role == "norm":
            value = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif role == "alibi":
            value = torch.full(shape, float(conf["modalities"]["audio"]["alibi_scale"]))
        else:
            value = 0.1 * torch.randn(shape, generator=gen)
        state[key if key.startswith("proj.") else DEFAULT_SCOPE_MAP[0] + key] = value
    (target / CONFIG_FILE).write_text(
        "# tiny random emotion2vec in the published emotion2vec_plus_large layout (not for real output)\n"
        + yaml.safe_dump(config, sort_keys=False),
        encoding="utf-8",
    )
    (target / TOKENS_FILE).write_text("\n".join(EMOTION2VEC_LABELS) + "\n", encoding="utf-8")
    torch.save({"model": state}, target / WEIGHTS_FILE)
    return target

"""Tiny U2 models for the ASR tests."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from audioforge.asr.model import U2Model, build_u2_model


def tiny_config(
    *,
    vocab_size: int = 30,
    encoder: str = "conformer",
    decoder: str = "bitransformer",
    input_layer: str = "conv2d",
    pos: str = "rel_pos",
    input_dim: int = 80,
    **model_conf: Any,
) -> dict[str, Any]:
    enc_conf: dict[str, Any] = {
        "output_size": 64,
        "attention_heads": 4,
        "linear_units": 128,
        "num_blocks": 2,
        "dropout_rate": 0.0,
        "positional_dropout_rate": 0.0,
        "input_layer": input_layer,
        "pos_enc_layer_type": pos,
        "use_dynamic_chunk": True,
    }
    if encoder == "conformer":
        enc_conf.update({"causal": True, "cnn_module_norm": "layer_norm", "cnn_module_kernel": 8})
    dec_conf: dict[str, Any] = {
        "num_blocks": 1,
        "linear_units": 128,
        "dropout_rate": 0.0,
        "positional_dropout_rate": 0.0,
    }
    if decoder == "bitransformer":
        dec_conf["r_num_blocks"] = 1
    conf = {"ctc_weight": 0.3, "reverse_weight": 0.3 if decoder == "bitransformer" else 0.0, "lsm_weight": 0.1}
    conf.update(model_conf)
    return {
        "input_dim": input_dim,
        "vocab_size": vocab_size,
        "encoder": encoder,
        "encoder_conf": enc_conf,
        "decoder": decoder,
        "decoder_conf": dec_conf,
        "model_conf": conf,
    }


def tiny_model(seed: int = 0, **kwargs: Any) -> U2Model:
    torch.manual_seed(seed)
    return build_u2_model(tiny_config(**kwargs)).eval()


@pytest.fixture(scope="session")
def model() -> U2Model:
    return tiny_model()

"""Shared fixtures of the tagging tests: the official PaSST-S state_dict layout, written out from the research note."""

from __future__ import annotations

import pytest
import torch


def official_shapes(*, stride: int = 10, depth: int = 12, classes: int = 527) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of an official PaSST checkpoint (DeiT-B width 768), listed independently of our model."""
    d = 768
    grid_f, grid_t = 128 // stride, 998 // stride
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, d),
        "dist_token": (1, 1, d),
        "new_pos_embed": (1, 2, d),
        "freq_new_pos_embed": (1, d, grid_f, 1),
        "time_new_pos_embed": (1, d, 1, grid_t),
        "patch_embed.proj.weight": (d, 1, 16, 16),
        "patch_embed.proj.bias": (d,),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        shapes.update(
            {
                b + "norm1.weight": (d,),
                b + "norm1.bias": (d,),
                b + "attn.qkv.weight": (3 * d, d),
                b + "attn.qkv.bias": (3 * d,),
                b + "attn.proj.weight": (d, d),
                b + "attn.proj.bias": (d,),
                b + "norm2.weight": (d,),
                b + "norm2.bias": (d,),
                b + "mlp.fc1.weight": (4 * d, d),
                b + "mlp.fc1.bias": (4 * d,),
                b + "mlp.fc2.weight": (d, 4 * d),
                b + "mlp.fc2.bias": (d,),
            }
        )
    shapes.update(
        {
            "norm.weight": (d,),
            "norm.bias": (d,),
            "head.0.weight": (d,),
            "head.0.bias": (d,),
            "head.1.weight": (classes, d),
            "head.1.bias": (classes,),
            "head_dist.weight": (classes, d),
            "head_dist.bias": (classes,),
        }
    )
    return shapes


def cheap_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Tensors of the given shapes backed by one small random row each (expanded views: tiny files, fast)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in shapes.items():
        base = torch.randn(shape[-1], generator=g) * 0.02
        out[k] = base.expand(*shape)
    return out


@pytest.fixture
def official_layout():
    return official_shapes

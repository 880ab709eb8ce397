"""Building blocks of the TRM network: casted linear/embedding, RMSNorm without gain, RoPE, SwiGLU,
attention, the post-norm block and its `mlp_t` variant.

Weights are stored in float32 and cast to the activation dtype in the forward pass (the reference's
"casted" layers), so the optimiser always updates float32 masters.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


def trunc_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Normal truncated at +-2 standard deviations, rescaled so the result has standard deviation `std`.

    Truncation shrinks the spread of a unit normal to about 0.88; dividing by that restores `std`
    (the JAX convention the reference follows, unlike `torch.nn.init.trunc_normal_`).
    """
    bound = 2.0
    mass = math.erf(bound / math.sqrt(2.0))
    density = math.exp(-bound * bound / 2.0) / math.sqrt(2.0 * math.pi)
    unit_std = math.sqrt(1.0 - 2.0 * bound * density / mass)
    with torch.no_grad():
        nn.init.trunc_normal_(tensor, mean=0.0, std=1.0, a=-bound, b=bound)
        return tensor.mul_(std / unit_std)


def rms_norm(h: torch.Tensor, eps: float) -> torch.Tensor:
    """h / sqrt(mean(h^2) + eps) over the last axis, in float32, cast back; no learnable gain."""
    h32 = h.float()
    return (h32 * torch.rsqrt(h32.square().mean(-1, keepdim=True) + eps)).to(h.dtype)


def swiglu_width(d: int, expansion: float) -> int:
    """Inner width of a SwiGLU on d features: round(expansion * d * 2/3), rounded up to a multiple of 256."""
    width = round(expansion * d * 2 / 3)
    return -(-width // 256) * 256


class CastedLinear(nn.Module):
    """Linear layer with float32 weights cast to the input's dtype; truncated-normal 1/sqrt(fan_in) init."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(out_features, in_features), 1.0 / math.sqrt(in_features)))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(h.dtype)
        return F.linear(h, self.weight.to(h.dtype), bias)


class CastedEmbedding(nn.Module):
    """Embedding table stored in float32, returned in `dtype`; truncated-normal init with `std`."""

    def __init__(self, num_embeddings: int, dim: int, std: float):
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(num_embeddings, dim), std))

    def forward(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return F.embedding(ids, self.weight.to(dtype))


class RotaryEmbedding(nn.Module):
    """cos/sin tables (float32, not saved) for 1-D positions 0..length-1 of the flattened sequence."""

    def __init__(self, head_dim: int, length: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
        angles = torch.cat((angles, angles), dim=-1)  # rotate-half layout: both halves share frequencies
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)


def apply_rope(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate t [B, H, L, head_dim] by position (non-interleaved rotate-half), in float32, cast back."""
    t32 = t.float()
    first, second = t32.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return (t32 * cos + rotated * sin).to(t.dtype)


class Attention(nn.Module):
    """Non-causal multi-head self-attention, fused qkv without bias, RoPE on q and k when given."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv_proj = CastedLinear(hidden_size, 3 * hidden_size)
        self.o_proj = CastedLinear(hidden_size, hidden_size)

    def forward(self, h: torch.Tensor, rope: RotaryEmbedding | None) -> torch.Tensor:
        batch, length, hidden = h.shape
        qkv = self.qkv_proj(h).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, H, L, head_dim]
        if rope is not None:
            q = apply_rope(q, rope.cos[:length], rope.sin[:length])
            k = apply_rope(k, rope.cos[:length], rope.sin[:length])
        out = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, hidden))


class SwiGLU(nn.Module):
    """silu(gate) * up over the last axis of width d, then down-projection back to d."""

    def __init__(self, d: int, expansion: float):
        super().__init__()
        width = swiglu_width(d, expansion)
        self.gate_up_proj = CastedLinear(d, 2 * width)
        self.down_proj = CastedLinear(width, d)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(h).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """Post-norm block: h <- norm(h + mix(h)); h <- norm(h + SwiGLU(h)).

    The token mixer is attention, or with `mlp_t` a SwiGLU across the sequence axis (width = the total
    sequence length, prefix included).
    """

    def __init__(self, hidden_size: int, num_heads: int, expansion: float, total_len: int,
                 mlp_t: bool, eps: float):
        super().__init__()
        self.eps = eps
        self.mlp_t = mlp_t
        if mlp_t:
            self.token_mlp = SwiGLU(total_len, expansion)
        else:
            self.attn = Attention(hidden_size, num_heads)
        self.mlp = SwiGLU(hidden_size, expansion)

    def forward(self, h: torch.Tensor, rope: RotaryEmbedding | None) -> torch.Tensor:
        if self.mlp_t:
            h_t = h.transpose(1, 2)
            h = rms_norm(h_t + self.token_mlp(h_t), self.eps).transpose(1, 2)
        else:
            h = rms_norm(h + self.attn(h, rope), self.eps)
        return rms_norm(h + self.mlp(h), self.eps)


class ReasoningNet(nn.Module):
    """net(a, b): the one block stack TRM uses for both updates, applied to a + b."""

    def __init__(self, hidden_size: int, num_heads: int, expansion: float, total_len: int,
                 num_layers: int, mlp_t: bool, eps: float, rope: RotaryEmbedding | None):
        super().__init__()
        self.layers = nn.ModuleList(
            Block(hidden_size, num_heads, expansion, total_len, mlp_t, eps) for _ in range(num_layers))
        self.rope = rope

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = a + b
        for layer in self.layers:
            h = layer(h, self.rope)
        return h

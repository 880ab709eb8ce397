"""Standard normal noise in which each row depends on that row's key alone, never on the other rows.

Test-time latent noise drawn from one generator per batch changes a puzzle's noise whenever the
batches are cut differently (another batch size, another data order). `RowKeyedNormal` instead hashes
(row key, call number, element index) into two 24-bit uniforms and Box-Muller's them into a normal
draw: the same key gives the same noise in any batch, on any device. Pure int32/float32 tensor
arithmetic (uint32 values emulated with masks), so it runs where the model runs.
"""
import math
from typing import Callable

import torch

NoiseSource = Callable[[torch.Size, torch.device, torch.dtype], torch.Tensor]   # (shape, device, dtype) -> N(0, 1)

_M1, _M2 = 0x7FEB352D, 0x846CA68B - 2**32       # lowbias32 multipliers, as signed int32
_GOLDEN = 0x9E3779B9 - 2**32


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int32 bit patterns (`>>` is arithmetic on signed ints)."""
    return (x >> bits) & ((1 << (32 - bits)) - 1)


def mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 (C. Wellons): a bijective uint32 hash with full avalanche, on int32 tensors (wrapping)."""
    x = x ^ _shr(x, 16)
    x = x * _M1
    x = x ^ _shr(x, 15)
    x = x * _M2
    return x ^ _shr(x, 16)


def global_normal(shape: torch.Size, device, dtype) -> torch.Tensor:
    """N(0, 1) from torch's global generator (for `device`)."""
    return torch.randn(shape, device=device, dtype=dtype)


def _uniform(bits: torch.Tensor) -> torch.Tensor:
    """(0, 1) from the top 24 bits: never 0, so log() is finite."""
    return (_shr(bits, 8).float() + 0.5) * (1.0 / (1 << 24))


class RowKeyedNormal:
    """A noise source for `TRM.recurse`: `source(shape, device, dtype)` returns N(0, 1) of `shape`
    (rows first), row r a function of `keys[r]` and how many times the source was called before.

    keys: [rows] integers, a tensor or numpy array (taken modulo 2**32), e.g. a hash of the puzzle, the seed
    and the copy index.
    """

    def __init__(self, keys: torch.Tensor):
        keys = torch.as_tensor(keys, dtype=torch.int64) & 0xFFFFFFFF
        self.keys = (keys - (keys >= 2**31).long() * 2**32).to(torch.int32)     # the same bits, as int32
        self.calls = 0

    def __call__(self, shape: torch.Size, device, dtype) -> torch.Tensor:
        rows = shape[0]
        if rows != len(self.keys):
            raise ValueError(f"noise for {rows} rows from a source keyed for {len(self.keys)}")
        per_row = math.prod(shape[1:])
        call = torch.tensor(((self.calls + 1) * _GOLDEN + 2**31) % 2**32 - 2**31, dtype=torch.int32)
        self.calls += 1
        base = mix32(self.keys.to(device) ^ mix32(call.to(device)))[:, None]         # [rows, 1]
        element = 2 * torch.arange(per_row, device=device, dtype=torch.int32)[None]   # [1, per_row]
        u1, u2 = _uniform(mix32(base ^ element)), _uniform(mix32(base ^ (element + 1)))
        normal = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2 * math.pi) * u2)
        return normal.view(shape).to(dtype)

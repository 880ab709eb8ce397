"""Model FLOPs of one training supervision step, counted from the config: the numerator of the MFU.

Matrix multiplies only, 2 FLOPs per multiply-add (elementwise work, norms and the loss are a few per cent
and are not counted, as usual for MFU). Per sample, one supervision step applies the network T (n + 1)
times, the last round's n + 1 applications with gradient, whose backward costs twice their forward; the
output head runs once forward and once backward. ARC at the paper's size (hidden 512, 2 layers, 916
positions, T = 3, n = 4): 15 forward + 10 backward-equivalent network passes of 15.9 GFLOP, about 0.40 TFLOP.
"""
from trm.config import TRMConfig
from trm.layers import swiglu_width


def block_flops_per_sample(c: TRMConfig) -> float:
    """FLOPs of one block's forward on one sample of `c.total_len` positions."""
    L, D = c.total_len, c.hidden_size
    channel_mlp = 3 * D * swiglu_width(D, c.expansion) * L             # gate, up, down
    if c.mlp_t:
        mixer = 3 * L * swiglu_width(L, c.expansion) * D               # the same SwiGLU across positions
    else:
        mixer = 4 * D * D * L + 2 * L * L * D                          # q, k, v, out; scores, weighted sum
    return 2.0 * (mixer + channel_mlp)


def train_step_flops_per_sample(c: TRMConfig) -> float:
    """FLOPs of one training supervision step (forward + backward) on one sample."""
    net = c.L_layers * block_flops_per_sample(c)
    passes = c.H_cycles * (c.L_cycles + 1) + 2 * (c.L_cycles + 1)      # forward, then the last round's backward
    head = 2.0 * c.seq_len * c.hidden_size * c.vocab_size * 3          # lm_head forward + backward
    return net * passes + head


def inference_step_flops_per_sample(c: TRMConfig) -> float:
    """FLOPs of one supervision step without gradient (evaluation) on one sample."""
    return c.L_layers * block_flops_per_sample(c) * c.H_cycles * (c.L_cycles + 1) + 2.0 * c.seq_len * c.hidden_size * c.vocab_size

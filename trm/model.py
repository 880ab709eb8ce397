"""TRM: one small network applied recursively to an answer y and a latent z, with ACT halting.

Paper symbols: x = scaled input embedding, y = answer state (reference `z_H`), z = latent reasoning state
(`z_L`), n = `L_cycles`, T = `H_cycles`, N_sup = `halt_max_steps`. One call of `TRM.forward` is one
supervision step:

    T-1 rounds without gradient, then one round with gradient, each round:
        n times  z <- net(z, y + x)
        once     y <- net(y, z)
    logits = lm_head(y) on the grid positions; q_halt = q_head(y at prefix position 0)

and the new carry holds y and z detached.
"""
import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from trm.carry import Carry
from trm.config import TRMConfig
from trm.device import forward_dtype_for
from trm.layers import CastedEmbedding, CastedLinear, ReasoningNet, RotaryEmbedding, trunc_normal_
from trm.noise import NoiseSource, global_normal
from trm.puzzle_embedding import PuzzleEmbedding

# 1/sqrt(2) keeps the variance of (token + learned position); the reference's rounded constant, not
# 1 / math.sqrt(2.0), so that float32 outputs match it bit for bit.
LEARNED_POS_SCALE = 0.707106781
Q_HALT_INIT_BIAS = -5.0  # sigmoid(-5) ~ 0.0067: nothing halts early at the start of training


@dataclass
class TRMOutput:
    """One supervision step's outputs: logits [B, seq_len, vocab] (forward dtype), q_halt [B] (float32)."""

    logits: torch.Tensor
    q_halt: torch.Tensor


class TRM(nn.Module):
    """The Tiny Recursive Model with its ACT wrapper (reference `TinyRecursiveReasoningModel_ACTV1`).

    Parameters (what Adam-atan2 trains and the EMA averages): token embedding, optional learned
    positions, the block stack, lm_head and q_head. Buffers: the puzzle-embedding table (trained by
    sparse sign-SGD) and the fixed initial states H_init / L_init. Building a model prints both counts.

    Halting (`forward`): after step s of an example, the slot halts when s = N_sup; in training mode also
    when q_halt > 0, except that with probability `halt_exploration_prob` per slot and step a minimum
    of m ~ U{2..N_sup} steps is imposed. In eval mode only N_sup halts (see `trm.evaluate` for the
    optional halt-on-q at evaluation). The reference's q_continue output is kept in q_head (2 outputs,
    for an identical parameter count) but never used, as in TRM.

    Deliberate differences from the reference: H_init / L_init are stored in float32 (the reference
    stores them in bfloat16); a slot restarts from them when its `steps` is 0 (set by `refill`) rather
    than when it is flagged halted; exploration draws come from torch's global CPU generator so runs are
    reproducible across devices (seed it per rank, e.g. seed + rank as the reference, after building
    the model with the same seed on every rank).
    """

    def __init__(self, config: TRMConfig, verbose: bool = True):
        super().__init__()
        self.config = config
        c = config
        self.embed_scale = math.sqrt(c.hidden_size)
        self.embed_tokens = CastedEmbedding(c.vocab_size, c.hidden_size, std=1.0 / self.embed_scale)
        self.puzzle_emb = PuzzleEmbedding(c.num_puzzle_identifiers, c.emb_ndim) if c.emb_ndim > 0 else None
        self.embed_pos = None
        rope = None
        if c.pos_encodings == "learned":
            self.embed_pos = CastedEmbedding(c.total_len, c.hidden_size, std=1.0 / self.embed_scale)
        elif c.pos_encodings == "rope":
            rope = RotaryEmbedding(c.hidden_size // c.num_heads, c.total_len, c.rope_theta)
        self.net = ReasoningNet(c.hidden_size, c.num_heads, c.expansion, c.total_len, c.L_layers,
                                c.mlp_t, c.rms_norm_eps, rope)
        self.lm_head = CastedLinear(c.hidden_size, c.vocab_size)
        self.q_head = CastedLinear(c.hidden_size, 2, bias=True)
        with torch.no_grad():
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(Q_HALT_INIT_BIAS)
        self.register_buffer("H_init", trunc_normal_(torch.empty(c.hidden_size), 1.0))
        self.register_buffer("L_init", trunc_normal_(torch.empty(c.hidden_size), 1.0))
        if verbose:
            network, table = self.num_params()
            print(f"TRM: {network:,} network parameters, {table:,} puzzle-embedding entries", flush=True)

    def num_params(self) -> tuple[int, int]:
        """(trainable network parameters, puzzle-embedding table entries), counted separately."""
        network = sum(p.numel() for p in self.parameters() if p.requires_grad)
        table = 0 if self.puzzle_emb is None else self.puzzle_emb.weights.numel()
        return network, table

    @property
    def forward_dtype(self) -> torch.dtype:
        return forward_dtype_for(self.H_init.device, self.config.forward_dtype)

    def empty_carry(self, batch_size: int, device=None) -> Carry:
        """A carry of `batch_size` slots, all halted and without data: `refill` it before the first step."""
        c = self.config
        device = self.H_init.device if device is None else device
        state = torch.zeros(batch_size, c.total_len, c.hidden_size, device=device, dtype=self.forward_dtype)
        tokens = torch.zeros(batch_size, c.seq_len, dtype=torch.long, device=device)
        return Carry(y=state, z=state.clone(), steps=torch.zeros(batch_size, dtype=torch.int32, device=device),
                     halted=torch.ones(batch_size, dtype=torch.bool, device=device),
                     inputs=tokens, labels=tokens.clone(),
                     puzzle_identifiers=torch.zeros(batch_size, dtype=torch.long, device=device))

    def embed(self, inputs: torch.Tensor, puzzle_identifiers: torch.Tensor,
              puzzle_rows: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, prefix + seq_len, D]: puzzle prefix (row in position 0, zeros after) ++ token embeddings.

        `puzzle_rows`: the identifiers' rows already taken (`PuzzleEmbedding.rows`); None takes them here.
        """
        c = self.config
        dtype = self.forward_dtype
        x = self.embed_tokens(inputs, dtype)
        if self.puzzle_emb is not None:
            row = (self.puzzle_emb(puzzle_identifiers, dtype) if puzzle_rows is None
                   else puzzle_rows.to(dtype))
            pad = c.prefix_len * c.hidden_size - row.shape[-1]
            prefix = nn.functional.pad(row, (0, pad)).view(-1, c.prefix_len, c.hidden_size)
            x = torch.cat((prefix, x), dim=1)
        if self.embed_pos is not None:
            x = LEARNED_POS_SCALE * (x + self.embed_pos.weight.to(dtype))
        return self.embed_scale * x

    def recurse(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, noise_std: float | None = None,
                noise: NoiseSource | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """T rounds of (n z-updates, 1 y-update); only the last round builds a graph.

        With `noise_std` > 0, Gaussian noise of that std is added to z after every z-update: test-time
        exploration of the latent. `noise(shape, device, dtype)` draws the N(0, 1) noise (e.g.
        `trm.noise.RowKeyedNormal`, the same per example however batches are cut); None draws from
        torch's global generator. `noise_std` None or 0 is the plain recursion, bit for bit.
        """
        n, T = self.config.L_cycles, self.config.H_cycles

        def update_z(z, y):
            z = self.net(z, y + x)
            if noise_std:
                z = z + noise_std * (noise or global_normal)(z.shape, z.device, z.dtype)
            return z

        with torch.no_grad():
            for _ in range(T - 1):
                for _ in range(n):
                    z = update_z(z, y)
                y = self.net(y, z)
        for _ in range(n):
            z = update_z(z, y)
        y = self.net(y, z)
        return y, z

    def step_inputs(self, carry: Carry) -> dict:
        """What a supervision step takes from outside its tensor program: `puzzle_rows`, the batch's
        puzzle-embedding rows (in training a fresh leaf for the sparse optimiser: `PuzzleEmbedding.rows`),
        and `min_steps`, halting exploration's draws (training only, else None).

        `forward` calls it when not given the result; a compiled step (`trm.compile`) calls it before its
        graph, which can neither create a leaf nor share the global CPU generator with eager code. The
        draws come before the recursion's work; that changes no number: training draws nothing else.
        """
        c = self.config
        rows = None if self.puzzle_emb is None else self.puzzle_emb.rows(carry.puzzle_identifiers)
        min_steps = None
        if self.training and c.halt_max_steps > 1:
            batch = carry.steps.shape[0]
            explore = torch.rand(batch) < c.halt_exploration_prob
            min_steps = explore * torch.randint(2, c.halt_max_steps + 1, (batch,))
            # non_blocking: staged at once, where a blocking copy to a GPU waits for the queued work
            min_steps = min_steps.to(carry.steps.device, non_blocking=True)
        return {"puzzle_rows": rows, "min_steps": min_steps}

    def forward(self, carry: Carry, noise_std: float | None = None, noise: NoiseSource | None = None,
                step_inputs: dict | None = None) -> tuple[Carry, TRMOutput]:
        """One supervision step on every slot; returns the new carry (y, z detached) and the outputs.

        Slots with steps 0 start from H_init / L_init. The returned carry has steps + 1 and `halted` by
        the rules in the class docstring. `noise_std` / `noise`: latent noise, see `recurse`.
        `step_inputs`: `self.step_inputs(carry)` taken beforehand (None: taken here).
        """
        c = self.config
        dtype = self.forward_dtype
        if step_inputs is None:
            step_inputs = self.step_inputs(carry)
        fresh = (carry.steps == 0).view(-1, 1, 1)
        y = torch.where(fresh, self.H_init.to(dtype), carry.y.to(dtype))
        z = torch.where(fresh, self.L_init.to(dtype), carry.z.to(dtype))
        x = self.embed(carry.inputs, carry.puzzle_identifiers, step_inputs["puzzle_rows"])
        y, z = self.recurse(x, y, z, noise_std, noise)
        logits = self.lm_head(y[:, c.prefix_len:])
        q_halt = self.q_head(y[:, 0]).float()[:, 0]
        steps = carry.steps + 1
        halted = self.halting(steps, q_halt.detach(), step_inputs["min_steps"])
        new_carry = replace(carry, y=y.detach(), z=z.detach(), steps=steps, halted=halted)
        return new_carry, TRMOutput(logits=logits, q_halt=q_halt)

    def halting(self, steps: torch.Tensor, q_halt: torch.Tensor, min_steps: torch.Tensor | None) -> torch.Tensor:
        """N_sup always halts; in training (`min_steps` given) also q_halt > 0, once past the exploration's minimum."""
        halted = steps >= self.config.halt_max_steps
        if min_steps is not None:
            halted = (halted | (q_halt > 0)) & (steps >= min_steps)
        return halted

"""A supervision step as one compiled graph (`torch.compile`, inductor, static shapes, no graph break).

`SupervisionStep(model, loss=True, compiled=True)` is called like the eager code it replaces:

    step = SupervisionStep(model, loss=True, compiled=True)     # training: forward + ACT loss
    carry, out, loss, metrics = step(carry)                      # then loss.backward() as usual
    step = SupervisionStep(model, loss=False, compiled=True)    # inference: forward only
    carry, out = step(carry)

What cannot be in a graph is done before it, eagerly (`TRM.step_inputs`): the puzzle-embedding rows'
leaf (the sparse optimiser reads its gradient) and halting exploration's draws from the global CPU
generator (so a compiled run draws exactly what an eager one draws). The backward runs through
AOTAutograd's compiled backward graph. `compiled=False` runs the same calls eagerly, bit for bit the
plain `model(carry)` + `act_loss`.

Compiling happens at the first call of each (batch size, mode) and is timed: `compile_seconds` adds up
those first calls (the compile dominates them; one step's work is included). Inductor keeps its
generated code in `TORCHINDUCTOR_CACHE_DIR` (FX graph and AOTAutograd caches), so a second process
compiling the same step reads it back instead of generating and building C++/Triton code again.
"""
import time

import torch

from trm.carry import Carry
from trm.config import TRMConfig
from trm.loss import act_loss
from trm.model import TRM, TRMOutput

COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "max-autotune", "reduce-overhead")


class SupervisionStep:
    """One supervision step of `model` (forward, and the ACT loss when `loss`), compiled or eager."""

    def __init__(self, model: TRM, loss: bool, compiled: bool, mode: str = "default"):
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
        self.model, self.loss, self.compiled = model, loss, compiled
        if compiled and model.H_init.device.type == "cpu":
            # Inductor's CPU code accumulates scatter-adds (the embeddings' backward) with atomic adds across
            # threads, so two runs would differ in the last bits; this mode makes it emit ordered code.
            torch.use_deterministic_algorithms(True)
        self.compile_seconds = 0.0
        self._seen: set = set()
        graph = self._with_loss if loss else self._forward
        self._graph = torch.compile(graph, fullgraph=True, dynamic=False, mode=mode) if compiled else graph

    def _forward(self, carry: dict, step_inputs: dict):
        new_carry, out = self.model(Carry(**carry), step_inputs=step_inputs)
        return new_carry.state_dict(), out.logits, out.q_halt

    def _with_loss(self, carry: dict, step_inputs: dict):
        new_carry, out = self.model(Carry(**carry), step_inputs=step_inputs)
        loss, metrics = act_loss(out, new_carry, self.model.config)
        return new_carry.state_dict(), out.logits, out.q_halt, loss, metrics

    def __call__(self, carry: Carry):
        """(new carry, TRMOutput) without loss; (new carry, TRMOutput, loss, metrics) with it."""
        key = (carry.batch_size, self.model.training, torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        first = self.compiled and key not in self._seen
        began = time.perf_counter()
        result = self._graph(carry.state_dict(), self.model.step_inputs(carry))
        if first:
            self._seen.add(key)
            self.compile_seconds += time.perf_counter() - began
        new_carry = Carry.from_state_dict(result[0])
        out = TRMOutput(logits=result[1], q_halt=result[2])
        return (new_carry, out) if not self.loss else (new_carry, out, result[3], result[4])


# `auto` compiles on a CPU models narrower than this: `bench/bench_train.py --compile` measured the compiled step
# faster at the demo's width and slower at the paper's hidden 512, where the matrix multiplies dominate and
# compiling saves little but costs a minute or more (bench/results/train.txt).
CPU_COMPILE_BELOW_HIDDEN = 512


def compile_pays(choice, device: torch.device, config: TRMConfig) -> bool:
    """`train.compile` / `eval.compile`: true | false | auto. `auto` compiles on CUDA (as the reference), on
    CPU for models below `CPU_COMPILE_BELOW_HIDDEN` wide, never on MPS (inductor's MPS backend is young)."""
    if isinstance(choice, bool):
        return choice
    if str(choice).lower() in ("true", "false"):
        return str(choice).lower() == "true"
    if str(choice) != "auto":
        raise ValueError(f"compile must be auto, true or false, got {choice!r}")
    kind = torch.device(device).type
    return kind == "cuda" or (kind == "cpu" and config.hidden_size < CPU_COMPILE_BELOW_HIDDEN)

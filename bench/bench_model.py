"""Forward + backward throughput of one TRM supervision step on this machine (CPU unless a GPU exists).

    python bench/bench_model.py                       # tiny, Sudoku mlp_t, Sudoku attention at batch 32
    python bench/bench_model.py --configs tiny --steps 20 --threads 1

One step = model(carry) (T rounds, the first T-1 without gradient) + act_loss + backward, on a batch
whose slots all continue (no refill), as in steady-state training. Prints samples/s, the achieved
GFLOP/s from an analytic count of the matrix multiplies, and each config's ratio to the Sudoku attention
config (the reference's Sudoku-Att run).
"""
import argparse
import time

import torch

from trm import TRM, TRMConfig, act_loss, refill, resolve_device
from trm.flops import train_step_flops_per_sample

SUDOKU = dict(seq_len=81, vocab_size=11, num_puzzle_identifiers=1)
CONFIGS = {
    "tiny": TRMConfig(**SUDOKU, hidden_size=64, num_heads=2, expansion=2, H_cycles=2, L_cycles=2,
                      puzzle_emb_len=1),
    "sudoku_mlp_t": TRMConfig(**SUDOKU, mlp_t=True, pos_encodings="none"),
    "sudoku_att": TRMConfig(**SUDOKU),
}
BASELINE = "sudoku_att"


def measure(config: TRMConfig, batch: int, steps: int, device: torch.device) -> float:
    torch.manual_seed(0)
    model = TRM(config, verbose=False).to(device).train()
    data = dict(inputs=torch.randint(1, config.vocab_size, (batch, config.seq_len)),
                labels=torch.randint(1, config.vocab_size, (batch, config.seq_len)),
                puzzle_identifiers=torch.zeros(batch, dtype=torch.long))
    carry = refill(model.empty_carry(batch, device), data)

    def one_step(carry):
        carry, out = model(carry)
        loss, _ = act_loss(out, carry, config)
        loss.backward()
        model.zero_grad(set_to_none=True)
        carry.halted[:] = False  # keep every slot running: steady state without data loading
        carry.steps.clamp_(max=1)
        return carry

    carry = one_step(carry)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        carry = one_step(carry)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per config (after one warm-up)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; on a busy machine 1 can be much faster)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = resolve_device(args.device)
    print(f"device {device}, forward dtype {dtype}, torch threads {torch.get_num_threads()}, batch {args.batch}")
    rates = {}
    for name in args.configs:
        config = CONFIGS[name]
        rate = measure(config, args.batch, args.steps, device)
        rates[name] = rate
        gflops = rate * train_step_flops_per_sample(config) / 1e9
        print(f"{name:14s} {rate:9.1f} samples/s  {args.batch / rate * 1e3:9.1f} ms/step  {gflops:7.1f} GFLOP/s",
              flush=True)
    if BASELINE in rates:
        for name, rate in rates.items():
            print(f"{name:14s} {rate / rates[BASELINE]:7.2f}x the {BASELINE} samples/s")


if __name__ == "__main__":
    main()

"""One prepared GPU check (at most 8 minutes): the ARC attention model's training and inference throughput.

    python bench/bench_gpu.py                 # on one GPU: batch 768, 50 timed steps per variant
    python bench/bench_gpu.py --tiny          # a tiny model on CPU in seconds (CI runs it: tests/test_bench_gpu.py)

Training: the ARC-AGI-1 preset's model (hidden 512, 2 layers, 916 positions, T=3, n=4, N_sup=16, bfloat16 forward
on CUDA) at global batch 768 on one GPU, on random data of the real shapes (no dataset build), the training
loop's step (`bench_train.Trainer`: refill, forward + ACT loss, backward, both optimisers, EMA), eager and
compiled: compile time, then samples/s, tokens/s, MFU (`trm.flops`, `trm.device.peak_flops`) and peak GPU
memory over the timed steps. Inference: `stage=eval_arc`'s batch (eval.batch_size 256) through 1 and 16
supervision steps with the compiled step (the published anchor: 31.3 samples/s on one H100, arXiv 2512.11847).
Batch 768 on one GPU needs the memory of an H200; on an 80 GB H100 pass --batch 384 (the rates are per sample).
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import Trainer  # noqa: E402
from record import commit_label  # noqa: E402
from trm import TRMConfig, evaluate_batch, resolve_device  # noqa: E402
from trm.compile import SupervisionStep  # noqa: E402
from trm.device import forward_dtype_for, peak_flops  # noqa: E402
from trm.flops import inference_step_flops_per_sample, train_step_flops_per_sample  # noqa: E402

ARC = dict(seq_len=900, vocab_size=12, num_puzzle_identifiers=876406, hidden_size=512, num_heads=8, L_cycles=4,
           H_cycles=3, halt_max_steps=16)
TINY = dict(seq_len=16, vocab_size=12, num_puzzle_identifiers=10, hidden_size=32, num_heads=2, L_layers=1,
            H_cycles=2, L_cycles=1, halt_max_steps=3, puzzle_emb_len=2)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_rates(config: TRMConfig, batch: int, steps: int, warmup: int, compiled: bool, device) -> dict:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    run = Trainer(config, batch, compiled=compiled, device=str(device))
    began = time.perf_counter()
    run.step()
    sync(device)
    first = time.perf_counter() - began
    for _ in range(warmup):
        run.step()
    sync(device)
    began = time.perf_counter()
    for _ in range(steps):
        run.step()
    sync(device)
    seconds = (time.perf_counter() - began) / steps
    samples = batch / seconds
    peak = peak_flops(device)
    return {"first step s": first, "ms/step": 1000 * seconds, "samples/s": samples,
            "tokens/s": samples * config.seq_len,
            "MFU": None if peak is None else samples * train_step_flops_per_sample(config) / peak,
            "peak GiB": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None}


def inference_rate(config: TRMConfig, batch: int, max_steps: int, device, repeats: int) -> float:
    torch.manual_seed(0)
    from trm import TRM
    model = TRM(config, verbose=False).to(device).eval()
    step = SupervisionStep(model, loss=False, compiled=True)
    rows = dict(inputs=torch.randint(1, config.vocab_size, (batch, config.seq_len)),
                labels=torch.randint(1, config.vocab_size, (batch, config.seq_len)),
                puzzle_identifiers=torch.randint(0, config.num_puzzle_identifiers, (batch,)))
    evaluate_batch(model, rows, max_steps=max_steps, step=step)        # compiles
    sync(device)
    began = time.perf_counter()
    for _ in range(repeats):
        evaluate_batch(model, rows, max_steps=max_steps, step=step)
    sync(device)
    return batch * repeats / (time.perf_counter() - began)


def fmt(key: str, value) -> str:
    return "-" if value is None else (f"{100 * value:.1f} %" if key == "MFU" else f"{value:,.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny model on CPU: checks the script, measures nothing")
    parser.add_argument("--batch", type=int, default=768)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--eval-batch", type=int, default=256)
    args = parser.parse_args()
    if args.tiny:
        config, device = TRMConfig(**TINY), torch.device("cpu")
        args.batch, args.steps, args.eval_batch, warmup, repeats = 4, 2, 4, 1, 1
    else:
        device, _ = resolve_device("auto")
        config, warmup, repeats = TRMConfig(**ARC), 5, 3
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# python bench/bench_gpu.py{' --tiny' if args.tiny else ''} (commit {commit_label()}, {name}, "
          f"torch {torch.__version__}, forward dtype {forward_dtype_for(device)})")
    print(f"training: batch {args.batch}, {args.steps} timed steps after {warmup} warm-up; "
          f"{train_step_flops_per_sample(config) / 1e9:.1f} GFLOP per sample-step")
    for compiled in (False, True):
        rates = train_rates(config, args.batch, args.steps, warmup, compiled, device)
        print(f"  {'compiled' if compiled else 'eager':<9}" + "  ".join(f"{k} {fmt(k, v)}" for k, v in rates.items()),
              flush=True)
    for max_steps in (1, config.halt_max_steps):
        rate = inference_rate(config, args.eval_batch, max_steps, device, repeats)
        flops = inference_step_flops_per_sample(config) * max_steps
        print(f"inference (compiled), batch {args.eval_batch}, {max_steps} supervision step(s): {rate:,.1f} samples/s, "
              f"{rate * flops / 1e12:.2f} TFLOP/s", flush=True)


if __name__ == "__main__":
    sys.exit(main())

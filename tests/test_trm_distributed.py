"""Gradient averaging and the sparse sign-SGD all-gather across 2 gloo processes on this machine."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trm import SparseSignSGD, average_gradients
from trm.puzzle_embedding import PuzzleEmbedding

pytestmark = pytest.mark.slow   # compiles, trains or starts Ray: not in the quick subset


def _worker(rank: int, init_file: str, out_dir: str):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        linear = torch.nn.Linear(2, 1, bias=False)
        linear.weight.grad = torch.full((1, 2), float(rank + 1))
        average_gradients(linear)

        embedding = PuzzleEmbedding(3, 2)
        out = embedding(torch.tensor([1, 2 * rank]), torch.float32)  # rank 0: ids 1, 0; rank 1: ids 1, 2
        row_one = [[1.0, -1.0], [-3.0, 0.5]][rank]                  # summed over ranks: (-2, -0.5)
        out.backward(torch.tensor([row_one, [1.0, 1.0]]))
        SparseSignSGD(embedding, lr=0.1, weight_decay=0.0).step()
        torch.save({"grad": linear.weight.grad, "table": embedding.weights}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_agree(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    for result in results:
        assert torch.equal(result["grad"], torch.full((1, 2), 1.5))
        expected = torch.tensor([[-0.1, -0.1], [0.1, 0.1], [-0.1, -0.1]])  # every rank's ids, summed once
        torch.testing.assert_close(result["table"], expected)

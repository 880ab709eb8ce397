"""One place that picks the device and the forward dtype, knows its peak FLOP/s and copies results to the
host without stalling it; nothing else in `trm/` assumes CUDA."""
import torch

# Dense bfloat16 tensor-core peaks in TFLOP/s (NVIDIA's datasheets: H100 SXM5 and H200 989, A100 312,
# L40S 362, L4 121), matched in this order against torch.cuda.get_device_name(); the MFU's denominator.
PEAK_BF16_TFLOPS = (("H100", 989.0), ("H200", 989.0), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0))

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_device(device: str = "auto", forward_dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """(device, forward dtype) for a device name: `auto` picks cuda, then mps, then cpu.

    A forward dtype of `auto` is bfloat16 on CUDA and float32 elsewhere: CPUs have no fast bfloat16 path,
    and bfloat16 on MPS depends on the macOS version, so float32 is the one that always works there.
    """
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    resolved = torch.device(device)
    return resolved, forward_dtype_for(resolved, forward_dtype)


def forward_dtype_for(device: torch.device, forward_dtype: str = "auto") -> torch.dtype:
    """The activation dtype on `device` for a `TRMConfig.forward_dtype` name."""
    if forward_dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if forward_dtype not in _DTYPES:
        raise ValueError(f"forward_dtype must be auto or one of {sorted(_DTYPES)}, got {forward_dtype!r}")
    return _DTYPES[forward_dtype]


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bfloat16 peak in FLOP/s from `PEAK_BF16_TFLOPS`; None on CPU, MPS or an unlisted GPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


class HostCopy:
    """A device tensor's copy to the host, started now and waited for only when read (`get`).

    On CUDA the copy is queued behind the work that makes the tensor and an event marks its end, so the
    host goes on queueing work; `get` waits for that event only, not for the work queued after it.
    """

    def __init__(self, tensor: torch.Tensor):
        self._event = None
        if tensor.device.type == "cuda":
            self._tensor = tensor.to("cpu", non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._tensor = tensor.cpu()

    def get(self) -> torch.Tensor:
        if self._event is not None:
            self._event.synchronize()
        return self._tensor

"""One place that picks the device and the forward dtype; nothing else in `trm/` assumes CUDA."""
import torch

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

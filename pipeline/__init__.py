"""Wires `augment/` and `trm/` to Ray, Hydra, storage and logging: `trm-pipeline stage=...` (or
`python -m pipeline.run stage=...`).

Importing this package first takes the working directory off the import path, unless it is the folder the
packages come from (a checkout). `python -m` puts it first on `sys.path`, so a run folder of the original
code (which holds copies of its `trm.py` and `losses.py`) or any folder with a `trm.py`, `augment.py`,
`torch.py`... would otherwise be imported in place of the real module, and its code run. Only `sys` and
`os`, loaded before any user code, are used until then. Ray workers get the same protection from
`pipeline.ray_setup.init_ray`, which starts Ray from `PACKAGES_ROOT`.
"""
import os
import sys

PACKAGES_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))   # the folder holding pipeline/


def _drop_working_directory() -> None:
    """Remove the entry `python -m` / `python -c` put first on `sys.path` for the working directory.

    A script's own folder (`python my_script.py`) is kept: its author put modules there on purpose.
    PYTHONPATH entries are kept as the user set them."""
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:        # the working directory was deleted: nothing can be imported from it
        return
    argv = getattr(sys, "argv", None) or [""]      # an embedded interpreter may have none
    started_by_flag = argv[0] in ("-m", "-c", "")    # sys.argv[0] is "-m" while `-m` imports the package
    if (cwd != PACKAGES_ROOT and sys.path and (started_by_flag or sys.path[0] == "")
            and os.path.realpath(sys.path[0] or os.curdir) == cwd):
        del sys.path[0]


_drop_working_directory()

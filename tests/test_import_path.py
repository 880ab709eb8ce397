"""No working directory changes what the CLI and its Ray workers import: from a published run folder (which
holds the original code's `trm.py` and `losses.py`) or a folder of modules named like this project's
packages, none of those files is imported, through the real CLI in a subprocess, on the driver and on
Ray workers. Each crafted module appends its name and process to a marker file when imported."""
import os
import subprocess
import sys
from pathlib import Path

from tests.test_reference_checkpoint import documented_config, documented_state, write_reference

CONSOLE_SCRIPT = Path(sys.executable).parent / "trm-pipeline"


def _crafted(folder: Path, names) -> Path:
    """`<name>.py` files in `folder` that record their import in `folder/imported.txt`; returns that file."""
    marker = folder / "imported.txt"
    for name in names:
        (folder / f"{name}.py").write_text(
            f"import os\nopen({str(marker)!r}, 'a').write(f'{name} imported by process {{os.getpid()}}\\n')\n")
    return marker


def _run(command: list, cwd: Path) -> subprocess.CompletedProcess:
    # a Ray of its own (not the test session's), as a user's shell would start it
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_GCS_SERVER_PORT", "PYTHONPATH")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_python_m_from_a_published_run_folder_imports_none_of_its_files(tmp_path):
    """The issue's case: `cd <run folder> && python -m pipeline.run stage=import checkpoint=.`"""
    folder = Path(write_reference(tmp_path / "published", documented_state(mlp_t=True), documented_config(mlp_t=True),
                                  step=5))
    marker = _crafted(folder, ("trm", "losses", "augment"))
    done = _run([sys.executable, "-m", "pipeline.run", "stage=import", "checkpoint=.", f"run_dir={tmp_path / 'run'}"],
                folder)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not marker.exists(), marker.read_text()
    assert (tmp_path / "run" / "imported_00000005" / "meta.json").exists()


def test_console_script_imports_nothing_from_the_working_directory(tmp_path):
    """`trm-pipeline` also keeps `pipeline.py` out (`python -m` resolves `pipeline` from the working directory
    before any code of this project runs)."""
    folder = Path(write_reference(tmp_path / "published", documented_state(mlp_t=True), documented_config(mlp_t=True),
                                  step=5))
    marker = _crafted(folder, ("trm", "losses", "augment", "pipeline"))
    assert CONSOLE_SCRIPT.exists(), f"{CONSOLE_SCRIPT} missing: reinstall the project (scripts/install.sh)"
    done = _run([str(CONSOLE_SCRIPT), "stage=import", "checkpoint=.", f"run_dir={tmp_path / 'run'}"], folder)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not marker.exists(), marker.read_text()
    assert (tmp_path / "run" / "imported_00000005" / "meta.json").exists()


# A driver working in the crafted folder (it moves there once `pipeline` is imported, as the console script's
# driver would be there from the start) starts Ray as every stage does; a worker then imports this project's
# packages and looks for the original code's `losses`.
WORKER_PROBE = """
import importlib.util, os, sys, ray
from omegaconf import OmegaConf
from pipeline.ray_setup import init_ray
os.chdir(sys.argv[1])
init_ray(OmegaConf.create({"address": sys.argv[2]}))

@ray.remote
def probe():
    import augment, pipeline.tasks.sudoku, trm
    return [m.__file__ for m in (augment, pipeline.tasks.sudoku, trm)], importlib.util.find_spec("losses")

files, losses = ray.get(probe.remote())
assert losses is None, losses
print("ok", files)
"""


def test_ray_workers_import_nothing_from_the_drivers_working_directory(ray_local, tmp_path):
    """Ray puts the driver's working directory first on the import path of its job's workers unless Ray is
    started or joined from elsewhere, which `init_ray` does (here it joins the session's cluster: a job of its
    own, with workers of its own)."""
    folder = tmp_path / "crafted"
    folder.mkdir()
    marker = _crafted(folder, ("trm", "losses", "augment"))
    (folder / "pipeline").mkdir()        # a folder named like the package: an empty namespace package
    address = ray_local.get_runtime_context().gcs_address
    done = _run([sys.executable, "-c", WORKER_PROBE, str(folder), address], tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not marker.exists(), marker.read_text()
    assert done.stdout.startswith("ok") and str(folder) not in done.stdout

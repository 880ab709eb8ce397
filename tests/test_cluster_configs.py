"""cluster/: every launcher YAML passes the checks `ray up` runs before calling a cloud, every KubeRay
manifest validates strictly against the KubeRay CRDs, and every documented entrypoint composes."""
import copy
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml
from omegaconf import OmegaConf
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import compose

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
LAUNCHER_YAMLS = sorted(CLUSTER.glob("*.yaml"))
KUBERAY_YAMLS = sorted((CLUSTER / "kuberay").glob("*.yaml"))
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}


def _launcher_check(config: dict) -> dict:
    config = prepare_config(copy.deepcopy(config))
    validate_config(config)
    return config


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=lambda p: p.name)
def test_launcher_yaml_is_valid(path):
    config = _launcher_check(yaml.safe_load(path.read_text()))
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    assert all(t["min_workers"] == 0 for t in workers.values())
    assert any("GPU" not in t["resources"] for t in workers.values())        # augment runs on CPU nodes
    assert {t["resources"].get("GPU") for t in workers.values()} >= {1, 8}
    assert config["docker"]["image"] == "rayproject/ray:2.60.0-py311-gpu"    # the pinned Ray and Python


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.__setitem__("idle_timeout_minute", 5), "Additional properties"),
    (lambda c: c["available_node_types"]["cpu_worker"].__setitem__("min_worker", 1), "Additional properties"),
    (lambda c: c["docker"].__setitem__("pull_before_runn", True), "Additional properties"),
    (lambda c: c["available_node_types"]["cpu_worker"]["resources"].__setitem__("GPU", 0.5), "not of type"),
    (lambda c: c.__setitem__("head_node_type", "headd"), "head_node_type"),
], ids=["top-level", "node-type", "docker", "fractional-gpu", "head-type"])
def test_launcher_yaml_with_a_typo_fails(mutate, message):
    config = yaml.safe_load(LAUNCHER_YAMLS[0].read_text())
    mutate(config)
    with pytest.raises((jsonschema.ValidationError, ValueError), match=message):
        _launcher_check(config)


def _strict(node):
    """Reject unknown fields wherever the CRD lists its fields, like `kubeconform -strict`."""
    if isinstance(node, dict):
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


@pytest.fixture(scope="module")
def crd_validators(shared_data):
    validators = {}
    for kind, name in CRD_FILES.items():
        # The C loader: the CRDs are 2.3 MB of YAML (about 25 s with the pure-Python one).
        crd = yaml.load((shared_data / "kuberay" / name).read_text(), Loader=yaml.CSafeLoader)
        schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
        validators[kind] = jsonschema.Draft7Validator(_strict(schema))
    return validators


def _errors(validators, manifest):
    assert manifest["apiVersion"] == "ray.io/v1"
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validators[manifest["kind"]].iter_errors(manifest)]


@pytest.mark.parametrize("path", KUBERAY_YAMLS, ids=lambda p: p.name)
def test_kuberay_manifest_is_valid(crd_validators, path):
    manifest = yaml.safe_load(path.read_text())
    assert _errors(crd_validators, manifest) == []


def test_kuberay_cluster_scales_gpus_from_zero():
    spec = yaml.safe_load((CLUSTER / "kuberay" / "raycluster.yaml").read_text())["spec"]
    assert spec["enableInTreeAutoscaling"] and spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    gpus = {}
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] == 0
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        gpus[group["groupName"]] = container["resources"]["limits"].get("nvidia.com/gpu", 0)
        shm = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"}
        assert [v["emptyDir"] for v in pod["volumes"] if v["name"] in shm] == [{"medium": "Memory"}]
    assert 0 in gpus.values() and max(gpus.values()) > 0


@pytest.mark.parametrize("path, mutate, message", [
    ("raycluster.yaml", lambda m: m["spec"]["workerGroupSpecs"][0].update(maxReplica=m["spec"]["workerGroupSpecs"][0].pop("maxReplicas")), "maxReplica"),
    ("raycluster.yaml", lambda m: m["spec"]["autoscalerOptions"].update(upscalingMode="Fast"), "Fast"),
    ("raycluster.yaml", lambda m: m["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(imagee="x"), "imagee"),
    ("rayjob-train.yaml", lambda m: m["spec"].update(entrypont=m["spec"].pop("entrypoint")), "entrypont"),
], ids=["worker-group", "enum", "container", "rayjob"])
def test_kuberay_manifest_with_a_typo_fails(crd_validators, path, mutate, message):
    manifest = yaml.safe_load((CLUSTER / "kuberay" / path).read_text())
    mutate(manifest)
    assert any(message in error for error in _errors(crd_validators, manifest))


def _entrypoints():
    """Every `python -m pipeline.run ...` command: RayJob entrypoints and cluster/README.md's commands."""
    found = [(p.name, yaml.safe_load(p.read_text())["spec"]["entrypoint"])
             for p in KUBERAY_YAMLS if p.name.startswith("rayjob")]
    readme = (CLUSTER / "README.md").read_text().replace("\\\n", " ")
    found += [("README.md", m) for m in re.findall(r"python -m pipeline\.run[^\n`|;&]*", readme)]
    return found


ENTRYPOINTS = _entrypoints()


def test_entrypoints_cover_every_stage_of_a_paper_run():
    assert len([e for e in ENTRYPOINTS if e[0] == "README.md"]) >= 3
    for stage in ("augment", "train", "eval_arc"):
        assert any(f"stage={stage} " in cmd + " " and "preset=arc_agi_1" in cmd for _, cmd in ENTRYPOINTS)


@pytest.mark.parametrize("source, command", ENTRYPOINTS, ids=[f"{s}:{c[16:60]}" for s, c in ENTRYPOINTS])
def test_entrypoint_composes(source, command):
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "pipeline.run"]
    cfg = compose(*argv[3:])
    assert str(cfg.data_dir).startswith("s3://")      # cluster runs keep data where every node sees it
    OmegaConf.to_container(cfg, resolve=True)

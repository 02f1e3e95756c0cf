"""cluster/ manifests parse, carry what KubeRay / the launcher need, and match the code's resources."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pip_resolve
import pytest
import yaml

from argen_ray.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
GPU_PRESET = load_config(ROOT / "configs" / "gpu-cluster.yaml")
PINNED_RUNTIME_ENVS = ["vllm.yaml", "pyfeat.yaml"]


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def _custom_resources(ray_start_params: dict) -> dict:
    raw = ray_start_params.get("resources", "{}")
    return json.loads(raw.strip().strip('"').replace('\\"', '"'))


def _cluster_specs():
    cluster = _load("kuberay/raycluster.yaml")
    job = _load("kuberay/rayjob-train.yaml")
    return [("raycluster", cluster["spec"]), ("rayjob", job["spec"]["rayClusterSpec"])]


def test_every_yaml_parses():
    files = sorted(CLUSTER.rglob("*.yaml"))
    assert len(files) >= 5
    for f in files:
        assert isinstance(yaml.safe_load(f.read_text()), dict), f


def test_kuberay_objects_have_required_fields():
    cluster = _load("kuberay/raycluster.yaml")
    job = _load("kuberay/rayjob-train.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert cluster["metadata"]["name"] and job["metadata"]["name"]
    for label, spec in _cluster_specs():
        assert spec["rayVersion"] == "2.60.0", label
        head = spec["headGroupSpec"]
        assert "rayStartParams" in head
        assert head["template"]["spec"]["containers"][0]["image"], label
        groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
        assert set(groups) == {"gpu", "cpu"}, label
        for g in groups.values():
            assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], (label, g["groupName"])
            assert g["template"]["spec"]["containers"][0]["image"]


def test_worker_groups_advertise_the_resources_the_code_requests():
    ray_cfg = GPU_PRESET.ray
    assert ray_cfg.pin_to_node_groups
    assert ray_cfg.node_group_resources("gpu") == {ray_cfg.gpu_node_resource: 0.001}
    need_gpus = max(GPU_PRESET.generator.num_gpus, GPU_PRESET.asi.vlm.num_gpus)
    for label, spec in _cluster_specs():
        groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
        gpu_res = _custom_resources(groups["gpu"]["rayStartParams"])
        cpu_res = _custom_resources(groups["cpu"]["rayStartParams"])
        assert ray_cfg.gpu_node_resource in gpu_res and ray_cfg.cpu_node_resource not in gpu_res, label
        assert ray_cfg.cpu_node_resource in cpu_res and ray_cfg.gpu_node_resource not in cpu_res, label
        gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert float(gpu_limits["nvidia.com/gpu"]) >= need_gpus, label
        cpu_limits = groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert "nvidia.com/gpu" not in cpu_limits, label
        # Enough CPU workers x CPUs for the configured scorer pool.
        cpus = float(cpu_limits["cpu"]) * groups["cpu"]["maxReplicas"]
        assert cpus >= GPU_PRESET.reward.num_scorers * GPU_PRESET.reward.scorer_num_cpus, label


def test_rayjob_entrypoint_runs_a_registered_command_on_an_existing_preset():
    from argen_ray.cli import COMMANDS

    argv = shlex.split(_load("kuberay/rayjob-train.yaml")["spec"]["entrypoint"])
    assert argv[0] == "argen-ray" and argv[1] in COMMANDS
    cfg_path = argv[argv.index("--config") + 1]
    assert (ROOT / cfg_path).is_file()
    load_config(ROOT / cfg_path)


def test_launcher_node_types_match_the_kuberay_groups():
    launcher = _load("launcher-aws.yaml")
    types = launcher["available_node_types"]
    assert launcher["head_node_type"] in types
    ray_cfg = GPU_PRESET.ray
    assert types["gpu_worker"]["resources"]["GPU"] >= GPU_PRESET.generator.num_gpus
    assert ray_cfg.gpu_node_resource in types["gpu_worker"]["resources"]
    assert ray_cfg.cpu_node_resource in types["cpu_worker"]["resources"]
    assert "GPU" not in types["cpu_worker"]["resources"]


@pytest.mark.parametrize("name, package", [("vllm.yaml", "vllm=="), ("pyfeat.yaml", "py-feat==")])
def test_runtime_envs_isolate_gpu_only_packages(name, package):
    env = _load(f"runtime_envs/{name}")
    pkgs = env["pip"]["packages"]
    assert any(p.startswith(package) for p in pkgs)
    # Never part of the default install.
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps_block = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert package.rstrip("=") not in deps_block


# --- KubeRay CRD schemas (vendored: cluster/kuberay/crd/SOURCE.md) and pip-resolvable runtime envs ---

CRD = CLUSTER / "kuberay" / "crd"


def _strict(schema):
    """The CRD schema as `kubectl apply --validate=strict` applies it: an object with declared
    properties rejects unknown fields unless it preserves them."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _crd_validator(kind: str):
    import jsonschema

    return jsonschema.Draft7Validator(_strict(json.loads((CRD / f"ray.io_{kind}.v1.schema.json").read_text())))


@pytest.mark.parametrize("manifest, kind", [("kuberay/raycluster.yaml", "rayclusters"),
                                            ("kuberay/rayjob-train.yaml", "rayjobs")])
def test_kuberay_manifests_validate_against_the_crd_schema(manifest, kind):
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in _crd_validator(kind).iter_errors(_load(manifest))]
    assert errors == [], f"{manifest} against KubeRay's {kind} CRD: {errors[:5]}"


def test_crd_validation_catches_typos_and_wrong_types():
    import copy

    validator = _crd_validator("rayclusters")
    good = _load("kuberay/raycluster.yaml")
    typo = copy.deepcopy(good)
    typo["spec"]["workerGroupSpecs"][0]["replica"] = typo["spec"]["workerGroupSpecs"][0].pop("replicas")
    wrong = copy.deepcopy(good)
    wrong["spec"]["workerGroupSpecs"][0]["minReplicas"] = "zero"
    assert any("replica" in e.message for e in validator.iter_errors(typo))
    assert any("'zero' is not of type 'integer'" in e.message for e in validator.iter_errors(wrong))


@pytest.mark.slow
@pytest.mark.parametrize("name", PINNED_RUNTIME_ENVS)
def test_runtime_env_pins_resolve_with_pips_resolver(name, pytestconfig):
    """`pip install --dry-run` on the env's packages: pip's resolver, no install, no machine config
    (started at the session's start, tests/pip_resolve.py)."""
    if not pip_resolve.registry_reachable():
        pytest.skip("the package registry (pypi.org) is unreachable from this machine: cannot resolve")
    packages = pip_resolve.packages(name)
    assert all("==" in p for p in packages), f"{name}: every package must be pinned: {packages}"
    returncode, stderr, report = pip_resolve.result(name, pip_resolve.run_dir(pytestconfig))
    assert returncode == 0, f"{name}: pins do not resolve:\n{stderr[-3000:]}"
    resolved = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    for pin in packages:
        pkg, version = pin.split("==")
        assert resolved[pkg.lower()] == version, f"{name}: {pkg} resolved to {resolved.get(pkg.lower())}"

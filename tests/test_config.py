"""The typed config: presets load, overrides apply, mistakes name the key and the file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from argen_ray.config import Config, ConfigError, load_config, save_resolved_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("preset", ["local.yaml", "gpu-cluster.yaml"])
def test_presets_load(preset):
    cfg = load_config(ROOT / "configs" / preset)
    assert isinstance(cfg, Config)


def test_gpu_preset_names_the_real_models():
    cfg = load_config(ROOT / "configs" / "gpu-cluster.yaml")
    assert cfg.generator.model == "damo-vilab/text-to-video-ms-1.7b"
    assert cfg.asi.vlm.model == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert cfg.generator.num_gpus > 0 and cfg.asi.vlm.num_gpus > 0


def test_local_preset_is_the_embedded_default():
    cfg = load_config(ROOT / "configs" / "local.yaml")
    assert cfg.data.kind == "demo" and cfg.ray.address is None
    assert cfg.tracking.tracking_uri is None  # SQLite in the run directory


def test_the_study_preset_is_the_local_preset_over_every_fold_and_two_seeds():
    """configs/local-study.yaml studies make demo's pipeline: only its run folder and the
    (fold, seed) pairs may differ from configs/local.yaml."""
    local = load_config(ROOT / "configs" / "local.yaml").model_dump()
    study = load_config(ROOT / "configs" / "local-study.yaml").model_dump()
    assert study["recognition"].pop("folds") == [1, 2, 3, 4, 5] and len(study["recognition"].pop("seeds")) >= 2
    local["recognition"].pop("folds"), local["recognition"].pop("seeds")
    # Paths under the run folder (e.g. the measured dynamics) follow run_dir.
    assert json.loads(json.dumps(study, default=str).replace(str(study["run_dir"]), str(local["run_dir"]))) \
        == json.loads(json.dumps(local, default=str))


def test_the_diffusion_preset_shares_the_local_presets_data_prompts_rewards_and_study():
    """configs/local-diffusion.yaml runs make demo's pipeline on the miniature: its data, ASI,
    reward and recognition settings are configs/local.yaml's; the generator and training differ,
    and its study may cover more folds (it has no 15-minute budget)."""
    local = load_config(ROOT / "configs" / "local.yaml").model_dump()
    diffusion = load_config(ROOT / "configs" / "local-diffusion.yaml").model_dump()
    diffusion = json.loads(json.dumps(diffusion, default=str).replace(str(diffusion["run_dir"]), str(local["run_dir"])))
    local = json.loads(json.dumps(local, default=str))
    assert set(local["recognition"].pop("folds")) <= set(diffusion["recognition"].pop("folds"))
    for section in ("data", "asi", "reward", "recognition"):
        assert diffusion[section] == local[section], section
    assert diffusion["generator"]["backend"] == "ti2v" and diffusion["generator"]["model"] != local["generator"]["model"]


def test_dotted_overrides_are_typed():
    cfg = load_config(ROOT / "configs" / "local.yaml",
                      ["train.iterations=7", "reward.w_t=0.5", "generator.action_space.steps=[5,10]",
                       "ray.address=null", "data.scarce_classes=[fear]"])
    assert cfg.train.iterations == 7 and cfg.reward.w_t == 0.5
    assert cfg.generator.action_space.steps == [5, 10]
    assert cfg.data.scarce_classes == ["fear"]


def test_unknown_key_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": {"iteratons": 3}}))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "train.iteratons" in str(err.value) and str(bad) in str(err.value)
    assert "unknown key" in str(err.value)


def test_wrong_type_names_key_and_value(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("reward:\n  w_t: lots\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "reward.w_t" in str(err.value) and "lots" in str(err.value)


def test_unknown_override_key_is_an_error():
    with pytest.raises(ConfigError, match="train.nope"):
        load_config(None, ["train.nope=1"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["train.iterations"])


def test_missing_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, [f"run_dir={tmp_path}", "train.lr=0.5"])
    path = save_resolved_config(cfg)
    assert path == tmp_path / "config.resolved.yaml"
    again = load_config(path)
    assert again == cfg


def test_presence_au_backend_refuses_intensity_scales():
    """py-feat reads AU presence probabilities (0-1): R_e/R_c scales set for OpenFace's 0-5
    intensities are refused with the fix, and presence-sized scales load."""
    with pytest.raises(ConfigError, match="presence probabilities.*rc_au_scale to 1"):
        load_config(None, ["reward.au_backend=py-feat"])
    cfg = load_config(None, ["reward.au_backend=py-feat", "reward.rc_au_scale=1", "reward.au_max=3"])
    assert cfg.reward.au_max == 3


def test_result_settings_leave_out_placement_and_keep_everything_results_depend_on():
    """What a rerun compares to decide whether a stored result is still valid: scaling the work
    out (actors, GPUs, worker processes, progress bars) keeps it, a setting that changes results
    does not, at any depth."""
    base = load_config(ROOT / "configs" / "local.yaml")
    placed = load_config(ROOT / "configs" / "local.yaml", ["generator.num_actors=4", "generator.max_batch=8",
                                                          "train.num_learners=2", "train.progress=false",
                                                          "recognition.processes=4", "data.demo.workers=8",
                                                          "reward.num_scorers=6", "asi.vlm.num_gpus=1"])
    for section in ("data", "asi", "generator", "reward", "train", "recognition"):
        assert getattr(placed, section).result_settings() == getattr(base, section).result_settings(), section
    for override, section in (("generator.w_max=9", "generator"), ("generator.action_space.steps=[5]", "generator"),
                              ("data.demo.num_identities=20", "data"), ("recognition.augment.gamma=0.5", "recognition"),
                              ("reward.w_c=0", "reward"), ("train.lr=0.1", "train")):
        other = load_config(ROOT / "configs" / "local.yaml", [override])
        assert getattr(other, section).result_settings() != getattr(base, section).result_settings(), override
    json.dumps(base.result_settings())  # plain JSON types

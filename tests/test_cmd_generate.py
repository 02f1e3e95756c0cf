"""`argen-ray generate`: videos + previews + manifest from prompts.jsonl, resumable; policy mode."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from argen_ray.cli import main
from argen_ray.data.video import read_video
from argen_ray.io import read_jsonl

TI2V = ["--set", "generator.backend=ti2v", "--set", "generator.model=tiny"]


@pytest.fixture(autouse=True)
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # the backend sizes torch's threads to generator.num_cpus


def _prompts(tmp_path, n=2):
    folder = tmp_path / "prompts"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i, emotion in zip(range(n), ["surprise", "fear", "disgust"]):
        Image.fromarray((rng.random((72, 64, 3)) * 255).astype(np.uint8)).save(folder / f"id{i}.png")
        rows.append({"prompt_id": f"id{i}/{emotion}", "image": f"id{i}.png", "emotion": emotion,
                     "aus": {"AU01": 0.6, "AU02": 0.5}, "seed": 10 * i,
                     "prompt": f"a person with a {emotion} expression, the inner brows rise"})
    (folder / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "prompts.jsonl"


def test_fixed_setting_writes_16_frame_videos_previews_and_manifest_then_resumes(tmp_path, capsys):
    prompts = _prompts(tmp_path)
    argv = ["generate", "--set", f"run_dir={tmp_path / 'run'}", *TI2V, "--set", "generator.num_frames=16",
            "--prompts", str(prompts), "--fixed", "2,2,1"]
    assert main(argv) == 0
    out = tmp_path / "run" / "generated"
    rows = read_jsonl(out / "manifest.jsonl")
    assert [r["clip_id"] for r in rows] == ["id0_surprise_0", "id1_fear_0"]
    for row in rows:
        video = read_video(out / row["video"])
        assert video.shape == (16, 64, 64, 3)
        assert (out / row["preview"]).read_bytes()[:3] == b"GIF"
        assert (row["steps"], row["alpha"], row["beta"]) == (2, 2.0, 1.0)
        assert row["nfe"] == 15 * 2 * 2 and row["model_id"] == "tiny-t2v-v1" and row["backend"] == "ti2v"
        assert len(row["guidance"]) == 15 and row["guidance"][-1] == max(row["guidance"])  # alpha > beta: late peak
        assert row["action"] is None  # 2 steps is not in the policy's action set
        assert row["emotion"] in ("surprise", "fear") and row["aus"] == {"AU01": 0.6, "AU02": 0.5}
    assert [r["seed"] for r in rows] == [0, 10]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    capsys.readouterr()
    # Rerun: nothing is regenerated; a second sample per prompt only adds the new clips.
    assert main(argv) == 0
    assert "2 clips already in" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")} == stamps
    assert main(argv + ["--per-prompt", "2"]) == 0
    rows = read_jsonl(out / "manifest.jsonl")
    assert sorted(r["clip_id"] for r in rows) == ["id0_surprise_0", "id0_surprise_1", "id1_fear_0", "id1_fear_1"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_0.mp4")} == stamps
    # Another action (or policy, or generator setting): the clips are made again, and the manifest
    # lists each clip once, with what made it; fewer clips asked for: the manifest lists only those.
    assert main(argv[:-1] + ["3,2,1", "--set", "generator.num_frames=3"]) == 0
    rows = read_jsonl(out / "manifest.jsonl")
    assert sorted(r["clip_id"] for r in rows) == ["id0_surprise_0", "id1_fear_0"]
    assert all(r["steps"] == 3 and r["num_frames"] == 3 for r in rows)
    assert all(read_video(out / r["video"]).shape[0] == 3 for r in rows)


def test_fixed_constant_guidance_is_ti2v_zeros_setting_and_scores_validity(tmp_path):
    from argen_ray.ard.guidance import TI2V_ZERO_GUIDANCE, TI2V_ZERO_STEPS, ActionSpace
    from argen_ray.config import load_config

    prompts = _prompts(tmp_path)
    overrides = [f"run_dir={tmp_path / 'run'}", "generator.backend=ti2v", "generator.model=tiny",
                 "generator.num_frames=4", "reward.w_e=0", "reward.w_c=0.5"]
    argv = ["generate", *sum((["--set", o] for o in overrides), []), "--prompts", str(prompts),
            "--fixed", "2,const:9", "--score"]
    assert main(argv) == 0
    rows = read_jsonl(tmp_path / "run" / "generated" / "manifest.jsonl")
    for row in rows:
        assert row["guidance"] == [9.0, 9.0, 9.0]  # one constant w per new frame, no curve
        assert (row["steps"], row["alpha"], row["beta"], row["action"]) == (2, None, None, None)
        assert row["nfe"] == 3 * 2 * 2
        # The prompt's target AUs reached the scorer: R_c is scored against them.
        assert row["rewards"]["rc_targets"] == {"AU01": 0.6, "AU02": 0.5} and row["rewards"]["r_c"] is not None
    # The helper the oracle table uses: TI2V-Zero's baseline, 10 steps at w = 9.0 on every frame.
    baseline = ActionSpace.from_config(load_config(None, overrides).generator).constant()
    assert (baseline.steps, TI2V_ZERO_STEPS, TI2V_ZERO_GUIDANCE) == (10, 10, 9.0)
    assert baseline.guidance.tolist() == [9.0] * 3 and baseline.alpha is None


def test_policy_mode_uses_the_policys_argmax_actions_and_scores(tmp_path):
    from argen_ray.ard.generator import build_generator
    from argen_ray.ard.guidance import ActionSpace
    from argen_ray.ard.policy import PolicyNetwork, export_policy, load_policy
    from argen_ray.config import load_config
    from argen_ray.data.video import read_image

    prompts = _prompts(tmp_path, n=3)
    torch.manual_seed(0)
    values = {"steps": [1, 2], "alpha": [1.0, 3.0], "beta": [1.0, 3.0]}
    network = PolicyNetwork(32, 4 * 8 * 8, [2, 2, 2])
    export_policy(network, tmp_path / "policy.pt", {"action_values": values, "state_encoder": "generator"})
    overrides = [f"run_dir={tmp_path / 'run'}", "generator.backend=ti2v", "generator.model=tiny",
                 "generator.num_frames=3", "reward.w_e=0"]
    argv = ["generate", *sum((["--set", o] for o in overrides), []), "--prompts", str(prompts),
            "--policy", str(tmp_path / "policy.pt"), "--score"]
    assert main(argv) == 0
    rows = read_jsonl(tmp_path / "run" / "generated" / "manifest.jsonl")
    # The same argmax actions, computed here from the generator's own state embeddings.
    cfg = load_config(None, overrides)
    backend = build_generator(cfg.generator)
    source = [json.loads(line) for line in prompts.read_text().splitlines()]
    text, image = backend.encode_state([r["prompt"] for r in source],
                                       [read_image(prompts.parent / r["image"]) for r in source])
    actions, _ = load_policy(tmp_path / "policy.pt").act(text, image)
    space = ActionSpace.from_config(cfg.generator, values)
    by_id = {r["prompt_id"]: r for r in rows}
    for r, action in zip(source, actions):
        row = by_id[r["prompt_id"]]
        assert row["action"] == action.tolist()
        assert row["steps"] == space.decode(action).steps and row["nfe"] == 2 * row["steps"] * 2
        assert row["policy"] == str(tmp_path / "policy.pt")
        assert set(row["rewards"]) >= {"score", "r_t", "r_q", "r_f", "r_e"}


@pytest.mark.parametrize("extra, message", [
    (["--fixed", "ten,1,1"], "--fixed 'ten,1,1': expected T,ALPHA,BETA"),
    (["--fixed", "0,1,1"], "T >= 1"),
    (["--fixed", "10,const:nine"], "--fixed '10,const:nine': expected T,const:W such as 10,const:9"),
    (["--fixed", "10,const:-1"], "a constant guidance W >= 0"),
    (["--fixed", "5,1,1", "--prompts", "nowhere/prompts.jsonl"], "nowhere/prompts.jsonl does not exist"),
])
def test_bad_arguments_are_clear_errors(tmp_path, capsys, extra, message):
    code = main(["generate", "--set", f"run_dir={tmp_path}", *TI2V, *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_augmentation_amounts_decide_the_clips_per_class(tmp_path):
    # DESIGN 2.5: amounts[c] clips for class c, spread over its prompts, each with its own seed.
    from argen_ray.commands.generate import generate_clips
    from argen_ray.config import load_config

    prompts = _prompts(tmp_path, n=3)
    cfg = load_config(None, [f"run_dir={tmp_path / 'run'}", "generator.backend=ti2v", "generator.model=tiny",
                             "generator.num_frames=3"])
    manifest = generate_clips(cfg, prompts, fixed="2,1,1", amounts={"surprise": 3, "fear": 1, "disgust": 0})
    rows = read_jsonl(manifest)
    assert sorted(r["clip_id"] for r in rows) == ["id0_surprise_0", "id0_surprise_1", "id0_surprise_2", "id1_fear_0"]
    assert sorted(r["seed"] for r in rows if r["emotion"] == "surprise") == [0, 1, 2]

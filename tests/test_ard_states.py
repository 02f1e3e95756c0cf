"""Policy states from prompts.jsonl: rows checked with file and line, embeddings cached per encoder."""
from __future__ import annotations

import json

import numpy as np
import pytest

from argen_ray.ard.states import StateError, build_state_encoder, load_states, read_prompt_rows
from argen_ray.config import load_config
from train_setup import fresh_run


def test_malformed_prompt_rows_are_named(tmp_path):
    path = tmp_path / "prompts.jsonl"
    with pytest.raises(StateError, match="does not exist: run `argen-ray prompts` first"):
        read_prompt_rows(path)
    path.write_text(json.dumps({"prompt_id": "a", "image": "x.png", "prompt": "p"}) + "\n"
                    + json.dumps({"prompt_id": "b", "image": "x.png"}) + "\n")
    with pytest.raises(StateError, match=r"prompts.jsonl: row 2 lacks prompt"):
        read_prompt_rows(path)
    path.write_text(json.dumps({"prompt_id": "a", "image": "x.png", "prompt": "p"}) + "\n{broken\n")
    with pytest.raises(StateError, match=r"prompts.jsonl:2: not valid JSON"):
        read_prompt_rows(path)
    path.write_text("\n".join(json.dumps({"prompt_id": "a", "image": "x.png", "prompt": "p"}) for _ in range(2)))
    with pytest.raises(StateError, match="row 2 repeats prompt_id 'a'"):
        read_prompt_rows(path)
    cfg = load_config(None, [f"run_dir={tmp_path}", "train.state_encoder=minilm"])
    path.write_text(json.dumps({"prompt_id": "a", "image": "missing.png", "prompt": "p"}) + "\n")
    with pytest.raises(StateError, match="prompt 'a': image missing.png does not exist"):
        load_states(cfg, build_state_encoder(cfg), path)
    with pytest.raises(StateError, match="unknown encoder 'clip'"):
        build_state_encoder(load_config(None, ["train.state_encoder=clip"]))


def test_minilm_states_are_embedded_once_and_split_without_overlap(tmp_path_factory, tmp_path, monkeypatch):
    run_dir = fresh_run(tmp_path_factory, tmp_path / "run")
    cfg = load_config(None, [f"run_dir={run_dir}", "train.state_encoder=minilm"])
    encoder = build_state_encoder(cfg)
    states = load_states(cfg, encoder)
    rows = read_prompt_rows(run_dir / "prompts" / "prompts.jsonl")
    assert len(states) == len(rows) and states.text_emb.shape == (len(rows), 384)
    assert states.image_emb.shape == (len(rows), 8 * 8 * 3) and states.images[0].dtype == np.uint8
    np.testing.assert_allclose(np.linalg.norm(states.text_emb, axis=1), 1.0, rtol=1e-4)
    # A second load reads the cache: the encoder is not called again.
    monkeypatch.setattr(encoder, "encode", lambda *a: pytest.fail("encoder called despite the cache"))
    again = load_states(cfg, encoder)
    np.testing.assert_array_equal(again.text_emb, states.text_emb)
    train, held_out = states.split(3, seed=0)
    ids = lambda s: {r["prompt_id"] for r in s.rows}  # noqa: E731
    assert len(held_out) == 3 and not ids(train) & ids(held_out) and len(train) + 3 == len(states)
    assert ids(held_out) == ids(states.split(3, seed=0)[1])  # seeded
    with pytest.raises(StateError, match="leaves no training state"):
        states.split(len(states), seed=0)

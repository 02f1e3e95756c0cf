"""The policy deployment's batching isolates failures: a state that the encoder chokes on, with
any exception, fails only its own request; the others in its batch get the decision they would
get alone. (The deployment class in process, without Ray: one batch handed to its batch method
as Serve's `@serve.batch` hands it; the service is the real policy and warp state encoder.)"""
from __future__ import annotations

import asyncio

from serve_setup import ROOT, astronaut_face, write_policy

from argen_ray.config import load_config
from argen_ray.serving.app import PolicyDeployment
from argen_ray.serving.schemas import RequestError


def test_one_bad_state_never_fails_the_others_in_its_batch(tmp_path):
    cfg = load_config(ROOT / "configs" / "local.yaml", [f"run_dir={tmp_path}", "serve.max_batch_size=8",
                                                        "serve.batch_wait_timeout_s=0.5"])
    policy = write_policy(cfg, cfg.path("policy", "policy.pt"))
    deployment = PolicyDeployment.func_or_class(cfg.model_dump(mode="json"),
                                                {"path": str(policy), "origin": "checkpoint", "mlflow_run_id": None})
    face = astronaut_face()
    prompts = [f"prompt {i}: the brows rise and the jaw drops" for i in range(5)]
    alone = [deployment.service.decide([p], [face])[0] for p in prompts]
    batch_method = PolicyDeployment.func_or_class.decide_batch.__wrapped__  # under @serve.batch
    # A lone surrogate makes the tokenizer raise TypeError (not an ArgenError); a missing image
    # fails the state encoder.
    for n, bad in enumerate((("a smile \ud800", face), ("a smile", None)), 1):
        results = asyncio.run(batch_method(deployment, [(p, face) for p in prompts] + [bad]))
        assert deployment.batches == n and deployment.largest_batch == len(prompts) + 1
        assert results[:len(prompts)] == alone
        assert isinstance(results[-1], RequestError) and results[-1].status == 422, results[-1]
        assert "cannot encode this request" in results[-1].message

"""Latency and throughput of POST /v1/policy under concurrency, against the bare policy (one run).

1. In process: the policy's bare forward pass (`PolicyHandle.act` on precomputed state
   embeddings, one state) and the full decision (`PolicyService.decide`: state encoder + forward).
2. Over HTTP on 127.0.0.1 (the Serve app of the given config, local preset by default): for each
   concurrency level, `--requests` POSTs from that many client threads; p50/p99 latency and
   throughput. Ratios are against step 1, measured in the same run on the same machine.

Bounded: loopback only, a fixed number of requests, a timeout per request. The policy is the
run dir's (or `--checkpoint`); without one, a freshly initialised policy is written into a
temporary run dir (serving speed does not depend on the weights).

    .venv/bin/python benchmarks/bench_serve.py [--requests 64] [--concurrency 1 4 8]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from argen_ray.config import load_config
from argen_ray.serving.images import encode_image

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "The person's face shows surprise: the inner brows rise and the jaw drops."


def face() -> np.ndarray:
    from skimage import data

    return data.astronaut()[0:256, 96:352].copy()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(call, repeats: int) -> np.ndarray:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return np.array(out)


def prepare_config(args) -> tuple:
    """The config (loopback, a free port) and a policy to serve."""
    from argen_ray.ard.generator import build_generator
    from argen_ray.ard.states import build_state_encoder
    from argen_ray.serving.policy import export_untrained_policy

    overrides = [*args.set, "serve.host=127.0.0.1", f"serve.port={free_port()}"]
    if args.checkpoint:
        overrides.append(f"serve.checkpoint={args.checkpoint}")
    cfg = load_config(args.config, overrides)
    if not args.checkpoint and not cfg.path("policy", "policy.pt").is_file():
        cfg = load_config(args.config, [*overrides, f"run_dir={tempfile.mkdtemp(prefix='bench-serve-')}"])
        generator = build_generator(cfg.generator) if cfg.train.state_encoder == "generator" else None
        encoder = build_state_encoder(cfg, generator)
        text, image = encoder.encode([PROMPT], [face()])
        export_untrained_policy(cfg, cfg.path("policy", "policy.pt"), encoder.encoder_id, text.shape[1], image.shape[1])
        print(f"[bench] no trained policy: serving a freshly initialised one from {cfg.run_dir}")
    return cfg


def in_process(cfg, repeats: int) -> dict:
    import torch

    from argen_ray.serving.policy import PolicyService

    # As many torch threads as a policy replica gets (Ray sets OMP_NUM_THREADS from its CPUs);
    # more threads than cores on a shared machine would make the baseline slower, not fairer.
    torch.set_num_threads(max(1, int(cfg.serve.policy_num_cpus)))
    service = PolicyService(cfg)
    img = face()
    text, image = service.encoder.encode([PROMPT], [img])
    service.policy.act(text, image)  # warm-up
    forward = timed(lambda: service.policy.act(text, image), repeats)
    service.decide([PROMPT], [img])
    decide = timed(lambda: service.decide([PROMPT], [img]), max(5, repeats // 10))
    return {"forward_p50_ms": float(np.median(forward) * 1e3), "decide_p50_ms": float(np.median(decide) * 1e3)}


def over_http(url: str, concurrency: int, requests: int, body: dict) -> dict:
    import httpx

    latencies, statuses = [], []
    with httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        def one(_):
            t0 = time.perf_counter()
            status = client.post("/v1/policy", json=body).status_code
            return time.perf_counter() - t0, status

        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            for latency, status in pool.map(one, range(requests)):
                latencies.append(latency)
                statuses.append(status)
        wall = time.perf_counter() - t0
    if any(s != 200 for s in statuses):
        raise SystemExit(f"[bench] /v1/policy answered {sorted(set(statuses))} at concurrency {concurrency}")
    lat = np.array(latencies) * 1e3
    return {"concurrency": concurrency, "requests": requests, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "throughput_rps": requests / wall}


def plot(rows: list[dict], base: dict, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from argen_ray.io import atomic_path

    conc = [r["concurrency"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(conc, [r["p50_ms"] for r in rows], "o-", label="HTTP p50")
    left.plot(conc, [r["p99_ms"] for r in rows], "s--", label="HTTP p99")
    left.axhline(base["decide_p50_ms"], color="gray", ls=":", label="in-process encode + forward")
    left.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="latency (ms)", title="/v1/policy latency")
    left.legend(fontsize=8)
    right.plot(conc, [r["throughput_rps"] for r in rows], "o-")
    right.set(xscale="log", xlabel="concurrent clients", ylabel="requests/s", title="/v1/policy throughput")
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "local.yaml"))
    parser.add_argument("--set", action="append", default=["ray.num_cpus=4"], metavar="KEY=VALUE")
    parser.add_argument("--checkpoint", default=None, help="policy to serve (default: the run dir's)")
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=200, help="bare forward passes timed in process")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "serve.json"))
    args = parser.parse_args()

    import ray
    from ray import serve

    from argen_ray.io import atomic_write_json
    from argen_ray.serving.app import start

    cfg = prepare_config(args)
    base = in_process(cfg, args.repeats)
    print(f"[bench] in process: bare forward p50 {base['forward_p50_ms']:.3f} ms, "
          f"encode + forward p50 {base['decide_p50_ms']:.1f} ms")
    t0 = time.perf_counter()
    url = start(cfg)
    print(f"[bench] Serve app up at {url} in {time.perf_counter() - t0:.0f} s")
    body = {"image": encode_image(face()), "prompt": PROMPT}
    rows = []
    try:
        over_http(url, 2, 8, body)  # warm-up: replicas, connections, caches
        for c in args.concurrency:
            rows.append(over_http(url, c, args.requests, body))
    finally:
        serve.shutdown()
        ray.shutdown()
    print(f"\n{'clients':>7} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>8} {'p50/forward':>12} {'p50/in-proc':>12}")
    for r in rows:
        r["p50_over_forward"] = r["p50_ms"] / base["forward_p50_ms"]
        r["p50_over_decide"] = r["p50_ms"] / base["decide_p50_ms"]
        print(f"{r['concurrency']:>7} {r['p50_ms']:>9.1f} {r['p99_ms']:>9.1f} {r['throughput_rps']:>8.1f} "
              f"{r['p50_over_forward']:>11.0f}x {r['p50_over_decide']:>11.2f}x")
    out = Path(args.out)
    atomic_write_json(out, {"in_process": base, "http": rows, "config": args.config, "overrides": args.set})
    plot(rows, base, out.with_suffix(".png"))
    print(f"\n[bench] wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()

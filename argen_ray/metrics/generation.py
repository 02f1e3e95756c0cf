"""Generation metrics of one run's generated clips against the dataset's real clips (DESIGN 2.4).

- FVD: generated clips vs the real clips of the emotions they were generated for.
- tFVD: the mean over those emotions of per-emotion FVD (same two sets, grouped by emotion).
- sFVD: the mean over identities of per-subject FVD, generated clips of a subject vs that
  subject's real clips of the generated emotions (does the video keep the person?).
- Diversity: within-class mean pairwise perceptual distance of the generated clips, and of the
  real clips of the same classes for reference.

Every clip goes through I3D once; the groupings reuse those features. Writes
`<run_dir>/metrics/generation.json` and a bar plot of per-group distances.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from argen_ray.data.labels import EMOTIONS
from argen_ray.io import atomic_path, atomic_write_json
from argen_ray.metrics.fvd import MetricInputError, frechet_distance, grouped_frechet_distance, i3d_features

if TYPE_CHECKING:
    from argen_ray.config import Config
    from argen_ray.data.records import ClipRecord, Dataset


def _plot_groups(result: dict, target: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("tFVD (per emotion)", result["tfvd"]["per_group"]), ("sFVD (per subject)", result["sfvd"]["per_group"]),
              ("diversity (generated vs real)", None)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (title, groups) in zip(axes, panels):
        if groups is not None:
            ax.bar(list(groups), list(groups.values()), color="C0")
        else:
            gen, real = result["diversity"]["generated"]["per_class"], result["diversity"]["real"]["per_class"]
            names = sorted(set(gen) | set(real))
            x = np.arange(len(names))
            ax.bar(x - 0.2, [gen.get(n, np.nan) for n in names], 0.4, label="generated")
            ax.bar(x + 0.2, [real.get(n, np.nan) for n in names], 0.4, label="real")
            ax.set_xticks(x, names)
            ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return target


def generation_metrics(cfg: "Config", dataset: "Dataset", generated: "list[ClipRecord]",
                       out_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """FVD, tFVD, sFVD and within-class diversity of `generated` (records from
    `read_generated_clips`) against the real clips of `dataset`; written to generation.json."""
    from argen_ray.metrics.diversity import distance_from_config, within_class_diversity

    rc = cfg.recognition
    if len(generated) < 2:
        raise MetricInputError(f"{len(generated)} generated clip(s): generation metrics need at least 2")
    from argen_ray.metrics.prefetch import real_clips_for_metrics

    labels = sorted({g.label for g in generated})
    real_clips = real_clips_for_metrics(dataset, labels, {g.subject for g in generated if g.subject})
    real_same, real_subject = real_clips["same_class"], real_clips["same_subject"]
    if len(real_same) < 2:
        raise MetricInputError(f"{dataset.kind} dataset has {len(real_same)} real clip(s) of "
                               f"{', '.join(EMOTIONS[i] for i in labels)}: FVD needs at least 2")
    real = {r.clip_id: r for r in real_same + real_subject}
    from argen_ray.metrics.validity import I3D_CACHE

    # One pass over every clip; the generation stage's validity FVD already cached many of them.
    feats = i3d_features([g.source for g in generated] + [r.source for r in real.values()], progress=progress,
                         cache_dir=cfg.path("metrics", I3D_CACHE))
    feats_gen, feats_real_all = feats[:len(generated)], feats[len(generated):]
    row = {cid: i for i, cid in enumerate(real)}
    feats_same = feats_real_all[[row[r.clip_id] for r in real_same]]

    tfvd = grouped_frechet_distance(feats_gen, feats_same, [EMOTIONS[g.label] for g in generated],
                                    [EMOTIONS[r.label] for r in real_same], rc.fvd_min_group_size)
    if real_subject:
        sfvd = grouped_frechet_distance(feats_gen, feats_real_all[[row[r.clip_id] for r in real_subject]],
                                        [g.subject or "unknown" for g in generated],
                                        [r.subject for r in real_subject], rc.fvd_min_group_size).to_dict()
    else:
        sfvd = {"value": None, "per_group": {}, "sizes": {}, "skipped": {"all": "no subject ids on the clips"},
                "min_group_size": rc.fvd_min_group_size}
    metric = distance_from_config(rc)
    result = {
        "num_generated": len(generated), "num_real": len(real_same), "emotions": [EMOTIONS[i] for i in labels],
        "fvd": frechet_distance(feats_gen, feats_same), "tfvd": tfvd.to_dict(), "sfvd": sfvd,
        "diversity": {
            "generated": within_class_diversity([g.source for g in generated], [EMOTIONS[g.label] for g in generated],
                                                metric),
            "real": within_class_diversity([r.source for r in real_same], [EMOTIONS[r.label] for r in real_same],
                                           metric),
        },
        "note": "FVD on I3D Kinetics-400 logits; with fewer clips than 400 the covariances are rank-deficient, "
                "so compare values only at equal sample sizes",
    }
    out = Path(out_dir) if out_dir is not None else cfg.path("metrics")
    result["plot"] = str(_plot_groups(result, out / "generation_groups.png"))
    atomic_write_json(out / "generation.json", result)
    return result

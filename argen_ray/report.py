"""The end-to-end run's HTML report: tables, plots and sample GIFs, one self-contained folder.

Images are copied into `<report>/assets/` so the folder can be zipped and shared as it is.
"""
from __future__ import annotations

import html
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from argen_ray.io import atomic_write_text

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left} .gal{display:flex;flex-wrap:wrap;gap:.8em}
figure{margin:0;text-align:center;font-size:.85em} img{max-width:100%} .note{color:#666;font-size:.9em}
.up{color:#1a7f37;font-weight:600} .down{color:#b42318;font-weight:600}
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
    cls = "" if isinstance(value, (int, float)) else ' class="l"'
    return f"<td{cls}>{html.escape(text)}</td>"


@dataclass
class Report:
    """Accumulates sections in order and writes `index.html` atomically."""

    out_dir: Path
    title: str
    parts: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        (self.out_dir / "assets").mkdir(parents=True, exist_ok=True)

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]], raw_cells: bool = False) -> None:
        head = "".join(f'<th class="l">{html.escape(str(h))}</th>' if i == 0 else f"<th>{html.escape(str(h))}</th>"
                       for i, h in enumerate(header))
        body = []
        for row in rows:
            cells = "".join(f"<td>{c}</td>" if raw_cells and isinstance(c, str) and c.startswith("<")
                            else _cell(c) for c in row)
            body.append(f"<tr>{cells}</tr>")
        self.parts.append(f"<table><tr>{head}</tr>{''.join(body)}</table>")

    def asset(self, path: str | Path) -> str | None:
        """Copy a file into assets/ and return its relative URL (None when it does not exist)."""
        src = Path(path)
        if not src.is_file():
            return None
        rel = f"assets/{src.parent.name}-{src.name}"
        shutil.copyfile(src, self.out_dir / rel)
        return rel

    def images(self, items: Sequence[tuple[str | Path, str]]) -> None:
        figs = []
        for path, caption in items:
            rel = self.asset(path)
            if rel:
                figs.append(f'<figure><img src="{html.escape(rel)}"><figcaption>{html.escape(caption)}</figcaption></figure>')
        if figs:
            self.parts.append(f'<div class="gal">{"".join(figs)}</div>')

    def write(self) -> Path:
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>{''.join(self.parts)}</body></html>")
        return atomic_write_text(self.out_dir / "index.html", page)


# --- the end-to-end run's report -------------------------------------------------------------

def _load(path) -> Any:
    import json

    return json.loads(Path(path).read_text())


def _fmt(value: Any) -> Any:
    return "-" if value is None else value


def _recognition_section(report: Report, results: dict) -> None:
    from argen_ray.recognition.study import format_delta, format_mean_std

    scarce = results.get("scarce") or []
    pairs = results.get("pairs", [])
    report.heading("Recognition: original vs augmented training set")
    report.paragraph(f"Protocol {results['protocol']}: a study over {len(pairs)} (fold, seed) pair(s) "
                     f"({', '.join(f'fold {f} seed {s}' if f is not None else f'seed {s}' for f, s in pairs)}); "
                     "both variants are trained on every pair. Only the training set changes (the augmented one adds "
                     "the generated clips); both are scored once, after the last epoch, on the same untouched test "
                     "split — nothing is selected or tuned on it. Cells: mean ± std over pairs; Δ = augmented − "
                     "original, paired per pair, with its 95 % percentile bootstrap CI over pairs. AR-x = recall of "
                     "class x; scarce AR = mean recall over the scarce classes.")
    keys = ["war", "uar", "scarce_ar", *(f"ar_{c}" for c in scarce)]
    header = ["model", "training set", "WAR", "UAR", "scarce AR", *(f"AR-{c}" for c in scarce)]
    plots = []
    for model, entry in results["study"].items():
        rows = [[entry["display_name"], variant, *(format_mean_std(s[k]) for k in keys)]
                for variant, s in entry["variants"].items()]
        if "delta" in entry:
            rows.append([entry["display_name"], "Δ [95 % CI]", *(format_delta(entry["delta"][k]) for k in keys)])
        report.table(header, rows)
        if "verdict" in entry:
            report.paragraph(f"Verdict ({entry['display_name']}): {entry['verdict']['text']}.")
        if len(pairs) < 10:
            report.paragraph(f"Read the CI with care: a percentile bootstrap over {len(pairs)} pair(s) can only "
                             "resample those few values, so it is narrower than the true 95 % interval (it "
                             "under-covers for small n); configs/local-study.yaml runs every fold x 2 seeds.",
                             note=True)
        rz = entry.get("recognizability")
        if rz:
            filtered = results.get("filter_unrecognized")
            report.paragraph(f"Recognizability (DESIGN 2.5): the original-only {entry['display_name']}'s recall on "
                             f"the generated clips, per class, pooled over {rz['pairs']} pair(s), beside its recall on "
                             f"that class's real test clips. Filter of unrecognized clips: "
                             + (f"on, dropped {rz['filter_dropped']} generated clip(s) from the augmented training "
                                "sets (summed over pairs)." if filtered else "off (nothing dropped)."))
            report.table(["class", "generated clips (over pairs)", "recognized", "recognizability",
                          "recall on real test clips", "dropped by filter"],
                         [[c, r["clips"], r["recognized"], round(r["recall"], 4), _fmt(r["real_test_recall"]),
                           r["filter_dropped"] if filtered else "filter off"] for c, r in rz["per_class"].items()])
        p = entry.get("plots", {})
        plots += [(p[k], f"{entry['display_name']}: {k.replace('_', ' ')}") for k in
                  ("recall", "confusion_original", "confusion_augmented") if k in p]
    report.images(plots)


def _generation_section(report: Report, manifest: Path, per_class: int = 4) -> None:
    from argen_ray.io import read_jsonl

    rows = read_jsonl(manifest)
    report.heading("Generated clips")
    by_emotion: dict[str, list[dict]] = {}
    for row in rows:
        by_emotion.setdefault(row["emotion"], []).append(row)
    table = []
    for emotion, items in sorted(by_emotion.items()):
        mean = lambda key: sum(r[key] for r in items) / len(items)  # noqa: E731
        table.append([emotion, len(items), mean("steps"), mean("alpha"), mean("beta"), mean("nfe")])
    report.table(["emotion", "clips", "mean T", "mean alpha", "mean beta", "mean NFE"], table)
    report.paragraph("Steps T and the guidance curve (alpha, beta) were chosen per clip by the trained policy; "
                     "NFE counts the generator's network evaluations per video.", note=True)
    for emotion, items in sorted(by_emotion.items()):
        # One clip per identity first, so the samples show different people.
        seen: set = set()
        firsts = [r for r in items if not (r.get("identity") in seen or seen.add(r.get("identity")))]
        shown = (firsts + [r for r in items if r not in firsts])[:per_class]
        report.paragraph(f"{emotion}: sample clips (GIF previews)")
        report.images([(manifest.parent / r["preview"], f"{r.get('identity') or ''} T={r['steps']} α={r['alpha']} "
                        f"β={r['beta']}: {r['prompt'][:90]}") for r in shown])


def _augmentation_section(report: Report, aug: dict) -> None:
    report.heading("Augmentation amounts")
    capped = f" Capped from {aug['capped_from']} so generated clips never outnumber real ones." if aug["capped_from"] else ""
    report.paragraph(f"Per scarce class g_c = max(0, ceil(gamma*m) - n_c) with gamma = {aug['gamma']}, m = "
                     f"{aug['median_non_scarce']:g} (median training count of the non-scarce classes); explicit "
                     f"counts for {', '.join(aug['overridden']) or 'no class'}.{capped} Share = the class's part of "
                     "the augmented training set.")
    report.table(["class", "real (train)", "generated", "share of training set"],
                 [[r["class"], r["real"], r["generated"], f"{r['share']:.1%}"] for r in aug["table_generated"]])


def _validity_section(report: Report, val: dict) -> None:
    report.heading("Generated-clip validity")
    rows = []
    for k, e in val["classes"].items():
        rows.append([k, e["generated_clips"], e["real_clips"], _fmt(e["generated_apex_displacement"]),
                     _fmt(e["real_apex_displacement"]), _fmt(e["motion_ratio"]), _fmt(e.get("face_presence")),
                     _fmt(e.get("real_face_presence")), _fmt(e.get("fvd")),
                     _fmt((e.get("separability") or {}).get("auc"))])
    report.table(["class", "generated", "real (train)", "apex displacement gen", "apex displacement real",
                  "motion ratio", "face presence gen", "face presence real", "FVD (class vs class)",
                  "separability AUC"], rows)
    sep = val["separability"]
    report.paragraph(f"Motion ratio: median apex landmark displacement from frame 0 (IOD units, head pose removed), "
                     f"generated / real; both measured with {val['landmarks']}. Face presence: share of frames in which "
                     f"the reward's face detector finds a face. Separability: ROC AUC of a "
                     f"cross-validated logistic regression on motion and texture statistics telling generated from "
                     f"real clips (0.5 = indistinguishable); pooled over classes {_fmt(sep.get('auc'))}"
                     + (f", strongest features {sep['top_features']}" if sep.get("top_features") else "") + ".",
                     note=True)


def _metrics_section(report: Report, gen: dict) -> None:
    report.heading("Generation metrics")
    report.table(["metric", "value", "groups scored", "groups skipped"], [
        ["FVD", gen["fvd"], 1, 0],
        ["tFVD (mean over emotions)", _fmt(gen["tfvd"]["value"]), len(gen["tfvd"]["per_group"]),
         len(gen["tfvd"]["skipped"])],
        ["sFVD (mean over subjects)", _fmt(gen["sfvd"]["value"]), len(gen["sfvd"]["per_group"]),
         len(gen["sfvd"]["skipped"])],
    ])
    report.paragraph(f"{gen['num_generated']} generated clips vs {gen['num_real']} real clips of "
                     f"{', '.join(gen['emotions'])}. {gen['note']}.", note=True)
    div_gen, div_real = gen["diversity"]["generated"], gen["diversity"]["real"]
    names = sorted(set(div_gen["sizes"]) | set(div_real["sizes"]))
    report.table([f"class ({div_gen['metric']})", "generated diversity", "generated clips", "real diversity",
                  "real clips"],
                 [[n, _fmt(div_gen["per_class"].get(n)), div_gen["sizes"].get(n, 0),
                   _fmt(div_real["per_class"].get(n)), div_real["sizes"].get(n, 0)] for n in names])
    skipped = {**{f"tFVD {g}": w for g, w in gen["tfvd"]["skipped"].items()},
               **{f"sFVD {g}": w for g, w in gen["sfvd"]["skipped"].items()}}
    if skipped:
        report.paragraph("Not scored: " + "; ".join(f"{g}: {w}" for g, w in skipped.items()), note=True)
    report.images([(gen["plot"], "per-group distances and within-class diversity")])


def write_run_report(cfg, state: dict) -> Path:
    """`<run_dir>/report/index.html` from the finished stages recorded in `state` (run.json)."""
    from argen_ray.recognition.models import display_name

    stages = state["stages"]
    result = lambda name: stages[name]["result"]  # noqa: E731
    report = Report(cfg.path("report"), f"argen-ray run: {Path(cfg.run_dir).name}")
    data = _load(result("data")["summary"])
    recognition = _load(result("recognition")["results"])
    report.paragraph(f"Dataset {data['kind']} ({data['clips']} clips), scarce classes "
                     f"{', '.join(data['scarce_classes'])}; generator {cfg.generator.backend} ({cfg.generator.model}); "
                     f"VLM {cfg.asi.vlm.backend}; recognition {', '.join(map(display_name, cfg.recognition.models))}. "
                     f"MLflow parent run {state.get('mlflow_run_id') or '(tracking off)'}.")
    _recognition_section(report, recognition)

    report.heading("Stages")
    report.table(["stage", "seconds"], [[name, s["seconds"]] for name, s in stages.items()]
                 + [["total", round(sum(s["seconds"] for s in stages.values()), 1)]])

    report.heading("Dataset")
    counts = data["class_counts"]
    splits = list(counts)
    classes = list(next(iter(counts.values())))
    report.table(["class", *splits, "scarce"], [[c, *(counts[s][c] for s in splits), "yes" if c in data["scarce_classes"]
                                                 else ""] for c in classes])
    if data["skipped_by_reason"]:
        report.paragraph("Skipped items: " + ", ".join(f"{k}: {v}" for k, v in data["skipped_by_reason"].items()))
    report.images([(result("data")["plot"], "clips per class and split")])

    prompts = result("prompts")
    report.heading("ASI: grounded prompts")
    report.paragraph(f"{prompts['prompts']} prompts for {prompts['identities']} identities x "
                     f"{', '.join(prompts['emotions'])} (VLM backend {prompts['backend']}); hallucination rate "
                     f"{prompts['hallucination_rate']:.1%} ({prompts['dropped']} of {prompts['asserted']} asserted "
                     f"facial actions dropped by the filter).")
    from argen_ray.io import read_jsonl

    samples = {}
    for row in read_jsonl(prompts["prompts_file"]):
        samples.setdefault(row["emotion"], row)
    report.table(["emotion", "identity", "prompt"], [[e, r["identity_id"], r["prompt"]] for e, r in samples.items()])
    report.images([(Path(prompts["prompts_file"]).parent / "overview.png", "identity frames and prompts")])

    train = result("train")
    report.heading("ARD: policy training")
    if train.get("eval"):
        ev = train["eval"]
        keys = [k for k in ("score", "r_t", "r_q", "r_f", "r_e", "r_c", "steps", "alpha", "beta", "nfe") if k in ev["policy"]]
        rows = {"policy": ev["policy"]}
        if ev.get("oracle"):
            from argen_ray.ard.evaluation import REFERENCE_ROWS

            rows.update({title: ev[label] for label, _, title in REFERENCE_ROWS if ev.get(label)})
        rows.update({**(ev.get("baselines") or {}), "random": ev["random"]})
        se = ev.get("score_se") or {}
        labels = {title: label for label, _, title in REFERENCE_ROWS} | {"policy": "policy", "random": "random"}
        report.table(["actions", *keys, "score s.e."], [[name, *(_fmt(row.get(k)) for k in keys),
                                                          _fmt(se.get(labels.get(name, name)))]
                                                         for name, row in rows.items()])
        if ev.get("oracle"):
            gaps = "; ".join(f"policy − {title}: {ev['policy_minus_' + label]['mean']:+.4f} "
                             f"(s.e. {ev['policy_minus_' + label]['se']:.4f})"
                             for label, _, title in REFERENCE_ROWS if ev.get("policy_minus_" + label))
            report.paragraph(f"Held-out evaluation on {ev['num_states']} states × {ev.get('num_seeds', 1)} generation "
                             f"seeds, every one of the {ev['num_actions']} actions scored on every (state, seed): the "
                             f"policy reaches {ev['oracle_fraction']:.1%} of the per-state best on the seed-mean "
                             f"(regret {ev['regret']:.4f}); random = the mean over all actions; standard errors over "
                             f"the states. {gaps}. Bar: " + "; ".join(
                                 f"{name}: {'met' if ok else 'not met'}" for name, ok in (ev.get("bars") or {}).items())
                             + ".", note=True)
        else:
            report.paragraph(f"Held-out evaluation on {ev['num_states']} states: the trained policy's argmax actions "
                             "against uniformly random actions.", note=True)
    report.images([(train["reward_curve"], f"reward per iteration ({train['iterations']} iterations)")])

    _generation_section(report, Path(result("generate")["manifest"]))
    if result("generate").get("augmentation"):
        _augmentation_section(report, _load(result("generate")["augmentation"]))
    if result("generate").get("validity"):
        _validity_section(report, _load(result("generate")["validity"]))
    _metrics_section(report, _load(result("metrics")["results"]))
    return report.write()

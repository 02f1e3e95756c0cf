"""The hallucination filter against a hand-labelled corpus (numbers in docs/asi.md).

The corpus (tests/data/hallucination_corpus.yaml) holds VLM-style descriptions for surprise,
disgust and fear in several writing styles; each sentence lists the AUs a human coder reads in
it and which are hallucinated for the target emotion (outside its EMFACS set). Printed:

- precision / recall of the AUs the filter drops, against the hallucinated labels, over
  (description, AU) pairs, overall and per emotion and per style;
- the share of valid asserted AUs that survive into the filtered prompt;
- the hallucination rate the labels give (hallucinated / asserted) next to the filter's own
  (dropped / asserted) — the paper's 47 % raw rate is of this kind;
- every description where the filter and the labels disagree.

Split `dev`: the lexicon (facs_kb.yaml phrases/pairs) was extended while reading these items;
split `heldout`: written afterwards and never used to tune the lexicon — its numbers are the
honest estimate for unseen VLM text.

    .venv/bin/python benchmarks/bench_filter.py [--corpus tests/data/hallucination_corpus.yaml]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from argen_ray.asi.filter import HallucinationFilter, load_labelled_corpus, score_on_corpus
from argen_ray.asi.knowledge import load_knowledge_base

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "hallucination_corpus.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    items = load_labelled_corpus(args.corpus)
    hfilter = HallucinationFilter(load_knowledge_base())
    overall = score_on_corpus(hfilter, items)
    print(f"corpus: {args.corpus} ({overall.descriptions} descriptions)")
    print(f"{'subset':<18}{'n':>4}{'halluc':>8}{'TP':>5}{'FP':>5}{'FN':>5}{'precision':>11}{'recall':>8}"
          f"{'valid kept':>12}")
    groups = [("all", items)]
    groups += [(f"split={s}", [i for i in items if i.get("split", "dev") == s]) for s in ("dev", "heldout")]
    groups += [(f"emotion={e}", [i for i in items if i["emotion"] == e])
               for e in sorted({i["emotion"] for i in items})]
    groups += [(f"style={s}", [i for i in items if i["style"] == s]) for s in sorted({i["style"] for i in items})]
    for name, subset in groups:
        sc = score_on_corpus(hfilter, subset)
        print(f"{name:<18}{sc.descriptions:>4}{sc.true_positive + sc.false_negative:>8}{sc.true_positive:>5}"
              f"{sc.false_positive:>5}{sc.false_negative:>5}{sc.precision:>11.3f}{sc.recall:>8.3f}"
              f"{sc.valid_kept_rate:>12.3f}")
    labelled = sum(len(s["aus"]) for i in items for s in i["sentences"])
    labelled_h = sum(len(s["hallucinated"]) for i in items for s in i["sentences"])
    asserted = dropped = 0
    for item in items:
        result = hfilter.apply(item["text"], item["emotion"], fallback="")
        asserted += len(result.asserted)
        dropped += len(result.dropped)
    print(f"hallucination rate: labels {labelled_h}/{labelled} = {labelled_h / labelled:.1%} (per sentence); "
          f"filter {dropped}/{asserted} = {dropped / max(asserted, 1):.1%} (per description)")
    for item_id, missed, wrong in overall.misses:
        print(f"  disagrees on {item_id}: missed {missed or '-'}, wrongly dropped {wrong or '-'}")


if __name__ == "__main__":
    main()

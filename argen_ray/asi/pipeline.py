"""The ASI stage end to end (DESIGN 2.1): dataset -> prompts.jsonl.

scarce emotions -> identity frames of neutral training clips -> per identity x emotion: retrieve
k knowledge-base candidates -> VLM fusion (batched) -> hallucination filter -> one JSONL line.
Outputs under `<run_dir>/prompts/`: `prompts.jsonl` (resumable: finished prompts made under the
same settings are skipped on rerun), `identities/<identity>.png`, `identity_rejections.jsonl`,
`summary.json` and `overview.png` (identity frames; asserted vs dropped actions per emotion), all
written atomically.
"""
from __future__ import annotations

from argen_ray.errors import ArgenError

import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from argen_ray.asi.filter import FilterResult, FilterStats, HallucinationFilter
from argen_ray.asi.identity import IdentityFrame, IdentitySelection, select_identities
from argen_ray.asi.knowledge import KnowledgeBase
from argen_ray.asi.retrieval import AURetriever, Candidate
from argen_ray.asi.vlm import VLMRequest, template_text
from argen_ray.config import Config
from argen_ray.data.labels import EMOTIONS, label_name
from argen_ray.data.records import Dataset
from argen_ray.io import JsonlStore, atomic_write_bytes, atomic_write_json, atomic_write_text

GenerateFn = Callable[[list[VLMRequest]], list[str]]


class PromptStageError(ArgenError, RuntimeError):
    """The prompt stage cannot produce prompts (no neutral clips, no identity frames, ...)."""


def prompts_dir(cfg: Config) -> Path:
    return cfg.path("prompts")


def prompt_emotions(cfg: Config, dataset: Dataset) -> list[str]:
    """`asi.emotions` when set, else the dataset's scarce classes (DESIGN 2)."""
    if cfg.asi.emotions:
        return [label_name(e) for e in cfg.asi.emotions]
    from argen_ray.data.scarce import configured_scarce_classes

    return [EMOTIONS[i] for i in configured_scarce_classes(cfg, dataset)]


def neutral_training_clips(dataset: Dataset) -> list:
    """Neutral clips of the training split (every split when the dataset has none, e.g. CK+).

    A dataset without a neutral class whose sequences start at a neutral face (CK+: records carry
    `neutral_onset`) gives its sequences instead; identity frames then come from their onsets."""
    pool = dataset.split("train") or dataset.records
    clips = [r for r in pool if r.emotion == "neutral"]
    if not clips:
        clips = [r for r in pool if r.neutral_onset]
    if not clips:
        raise PromptStageError(f"{dataset.kind} dataset at {dataset.root}: no neutral training clips and no "
                               "sequences with a neutral onset to take identity frames from")
    return clips


def intensity_vectors(dataset: Dataset, emotions: list[str], estimator, max_clips: int, max_frames: int = 16,
                      progress: bool = False) -> dict[str, list[dict]]:
    """Per scarce emotion, AU intensity vectors read from its training clips (the paper's eq. 8 and
    DESIGN 2.1 step 2: the knowledge base adapted to the scarce subset).

    Each vector is one clip's expression range per AU: the largest rise of the AU over its lowest
    reading in the clip, on a 0-1 scale (intensities divided by 5; a presence backend's
    probabilities as they are — an approximation the record's `intensity_clip` traces). Clips that cannot be read
    are skipped. Returns {emotion: [{"clip_id": ..., "aus": {AU: value}}, ...]}."""
    from tqdm.auto import tqdm

    from argen_ray.data.sampling import uniform_indices
    from argen_ray.data.video import VideoReadError, count_frames, read_frames_skipping_bad

    pool = dataset.split("train") or dataset.records
    out: dict[str, list[dict]] = {}
    for emotion in emotions:
        clips = sorted((r for r in pool if r.emotion == emotion), key=lambda r: r.clip_id)[:max_clips]
        vectors = []
        for record in tqdm(clips, desc=f"AU intensities ({emotion})", unit="clip", disable=not progress):
            try:
                total = record.num_frames or count_frames(record.source)
                indices = np.asarray(uniform_indices(total, min(max_frames, total)), dtype=int)
                frames, bad = read_frames_skipping_bad(record.source, indices)
                indices = np.array([i for i in indices if int(i) not in bad], dtype=int)
                reading = estimator.estimate(frames, record=record, frame_indices=indices)
            except (VideoReadError, ArgenError):
                continue
            values = np.clip(reading.values[reading.face_found], 0.0, reading.scale_max)
            if len(values) < 2:
                continue
            rise = (np.nanmax(values, axis=0) - np.nanmin(values, axis=0)) / reading.scale_max
            vectors.append({"clip_id": record.clip_id,
                            "aus": {n: round(float(v), 3) for n, v in zip(reading.names, rise) if np.isfinite(v)}})
        out[emotion] = vectors
    return out


def prompt_seed(base_seed: int, prompt_id: str) -> int:
    """A stable per-prompt seed (same config + prompt id -> same retrieval and sampling)."""
    return (int(base_seed) * 1_000_003 + zlib.crc32(prompt_id.encode())) % (2 ** 31)


def save_identity_images(selection: IdentitySelection, out: Path) -> dict[str, Path]:
    """Write each chosen identity frame once; returns its path relative to `out` (the folder of
    prompts.jsonl, against which readers resolve it), so a run folder moved or mounted elsewhere
    (a `ray job submit` working dir, a shared volume) still finds its images."""
    from PIL import Image

    paths = {}
    for frame in selection.chosen:
        target = out / "identities" / f"{frame.identity_id}.png"
        if not target.is_file():
            buf = io.BytesIO()
            Image.fromarray(frame.image).save(buf, format="PNG")
            atomic_write_bytes(target, buf.getvalue())
        paths[frame.identity_id] = target.relative_to(out)
    return paths


@dataclass
class PendingPrompt:
    identity: IdentityFrame
    emotion: str
    candidates: list[Candidate]
    request: VLMRequest
    intensity: dict | None = None   # the scarce clip's AU intensity vector the candidates were adapted to
    attempt: int = 0                # resamples after a prompt repeated another identity's


# Resamples (new seed) when a prompt repeats one another identity already has for the emotion.
MAX_RESAMPLES = 8


def prompt_aus(kb: KnowledgeBase, result: FilterResult, candidates: list[Candidate], emotion: str) -> dict[str, float]:
    """Intensities (0-1) of the AUs the final prompt asserts: from the first candidate that has
    the AU, else the emotion's prototype, else 0.5 (moderate)."""
    prototype = kb.prototype_aus(emotion)
    out = {}
    for au in result.kept:
        found = next((c.record.aus[au] for c in candidates if au in c.record.aus), None)
        out[au] = float(found if found is not None else prototype.get(au, 0.5))
    return out


class PromptStage:
    """Builds the prompts of one run; `run(generate)` takes any VLM call (local or a VLMActor)."""

    def __init__(self, cfg: Config, kb: KnowledgeBase, retriever: AURetriever, progress: bool = True):
        self.cfg, self.kb, self.retriever, self.progress = cfg, kb, retriever, progress
        self.filter = HallucinationFilter(kb)
        self.out = prompts_dir(cfg)
        # Recorded with every prompt: a prompt is kept on a rerun only under the same settings. The
        # emotion list is left out: each emotion's prompts are made independently of the others.
        asi = {k: v for k, v in cfg.asi.result_settings().items() if k != "emotions"}
        self.settings_key = cfg.settings_digest("seed", "data", asi=asi)

    def select(self, dataset: Dataset) -> IdentitySelection:
        from argen_ray.asi.au import get_au_estimator

        icfg = self.cfg.asi.identity
        estimator = get_au_estimator(self.cfg.asi.au.backend)
        selection = select_identities(neutral_training_clips(dataset), estimator, icfg, max_frames=icfg.max_frames,
                                      one_per_subject=icfg.one_per_subject, limit=icfg.max_identities,
                                      progress=self.progress)
        atomic_write_text(self.out / "identity_rejections.jsonl",
                          "".join(json.dumps(r.as_dict()) + "\n" for r in selection.rejections))
        if not selection.chosen:
            reasons = ", ".join(f"{k}: {v}" for k, v in selection.reason_counts().items())
            raise PromptStageError(f"no identity frame passed the checks (asi.identity); rejections: {reasons}")
        return selection

    def pending(self, selection: IdentitySelection, emotions: list[str], store: JsonlStore,
                vectors: dict[str, list[dict]] | None = None) -> list[PendingPrompt]:
        for emotion in emotions:
            self.kb.emotion(emotion)  # unknown emotion -> clear error before any work
        todo = []
        for identity in selection.chosen:
            for emotion in emotions:
                prompt_id = f"{identity.identity_id}__{emotion}"
                if prompt_id in store:
                    continue
                todo.append(self.prepare(identity, emotion, (vectors or {}).get(emotion) or []))
        return todo

    def prepare(self, identity: IdentityFrame, emotion: str, vectors: list[dict], attempt: int = 0) -> PendingPrompt:
        """Retrieval for one identity x emotion: draw one of the emotion's intensity vectors, query
        with the AUs it reads strongest, sample k candidates and adapt their intensities to it.
        A resample (`attempt` > 0) draws with a new seed and a flatter softmax (x4 per attempt)."""
        prompt_id = f"{identity.identity_id}__{emotion}"
        seed = prompt_seed(self.cfg.seed + attempt * 7919, prompt_id)
        rng = np.random.default_rng(seed)
        vector = vectors[int(rng.integers(len(vectors)))] if vectors else None
        hint = self.intensity_hint(emotion, vector["aus"]) if vector else None
        candidates = [Candidate(adapted, self.kb.render(adapted), c.score)
                      for c in self.retriever.retrieve(emotion, rng, query=self.retriever.query_for(emotion, hint),
                                                       temperature=self.retriever.temperature * 4 ** attempt)
                      for adapted in [self.kb.adapted(c.record, vector["aus"] if vector else None)]]
        request = VLMRequest(request_id=prompt_id, image=identity.image, emotion=emotion,
                             emotion_noun=self.kb.emotion(emotion).noun,
                             descriptions=[c.text for c in candidates], seed=seed)
        return PendingPrompt(identity, emotion, candidates, request, vector, attempt)

    def intensity_hint(self, emotion: str, aus: dict[str, float], count: int = 2) -> str | None:
        """The emotion's allowed AUs this vector reads strongest, as descriptions with adverbs."""
        allowed = self.kb.allowed_aus(emotion)
        top = sorted(((v, a) for a, v in aus.items() if a in allowed and a in self.kb.aus and v > 0.05),
                     reverse=True)[:count]
        return ", ".join(self.kb.aus[a].describe(v) for v, a in top) or None

    def intensity_vectors(self, dataset: Dataset, emotions: list[str]) -> dict[str, list[dict]]:
        """The scarce subset's AU intensity vectors (asi.intensity_clips per emotion), saved beside
        the prompts; {} when adaptation is off."""
        from argen_ray.asi.au import get_au_estimator

        if not self.cfg.asi.intensity_clips:
            return {}
        vectors = intensity_vectors(dataset, emotions, get_au_estimator(self.cfg.asi.au.backend),
                                    self.cfg.asi.intensity_clips, self.cfg.asi.identity.max_frames, self.progress)
        atomic_write_json(self.out / "intensity_vectors.json", vectors)
        return vectors

    def record(self, item: PendingPrompt, raw_text: str, image_path: Path) -> tuple[dict, FilterResult]:
        result = self.filter.apply(raw_text, item.emotion, fallback=template_text(item.request))
        vlm = self.cfg.asi.vlm
        rec = {
            "prompt_id": item.request.request_id, "identity_id": item.identity.identity_id,
            "clip_id": item.identity.clip_id, "subject": item.identity.subject, "frame_index": item.identity.frame_index,
            "image": str(image_path), "emotion": item.emotion,
            "aus": prompt_aus(self.kb, result, item.candidates, item.emotion),
            "descriptions": item.request.descriptions,
            "candidates": [{"aus": c.record.aus, "source": c.record.source, "score": c.score} for c in item.candidates],
            "intensity_clip": (item.intensity or {}).get("clip_id"), "resamples": item.attempt,
            "raw_text": raw_text, "prompt": result.prompt,
            "asserted_aus": result.asserted, "kept_aus": result.kept, "dropped_aus": result.dropped,
            "hallucination_rate": result.hallucination_rate, "fell_back": result.fell_back,
            "backend": vlm.backend, "model": None if vlm.backend == "template" else vlm.model,
            "seed": item.request.seed, "settings_key": self.settings_key,
        }
        return rec, result

    def run(self, dataset: Dataset, generate: GenerateFn) -> dict:
        from tqdm.auto import tqdm

        emotions = prompt_emotions(self.cfg, dataset)
        if not emotions:
            raise PromptStageError("no target emotions: the dataset has no scarce class and asi.emotions is not set")
        store = JsonlStore(self.out / "prompts.jsonl", key="prompt_id")
        stale = [r for r in store if r.get("settings_key") != self.settings_key]
        if stale:  # resuming keeps only the prompts made under these settings
            store.retain(lambda r: r.get("settings_key") == self.settings_key)
            print(f"[argen-ray] {len(stale)} prompts in {store.path} were made under other data or ASI settings "
                  f"(backend, model, knowledge base, retrieval, seed): made again")
        selection = self.select(dataset)
        images = save_identity_images(selection, self.out)
        vectors = self.intensity_vectors(dataset, emotions)
        todo = self.pending(selection, emotions, store, vectors)
        # No two identities share a prompt for one emotion: a repeat is resampled with a new seed.
        used = {(r["emotion"], r["prompt"]) for r in store}
        batch = self.cfg.asi.vlm.batch_size
        with tqdm(total=len(selection.chosen) * len(emotions), initial=len(selection.chosen) * len(emotions) - len(todo),
                  desc=f"prompts ({self.cfg.asi.vlm.backend})", unit="prompt", disable=not self.progress) as bar:
            while todo:
                chunk, todo = todo[:batch], todo[batch:]
                texts = generate([p.request for p in chunk])
                if len(texts) != len(chunk):
                    raise PromptStageError(f"VLM returned {len(texts)} texts for {len(chunk)} requests")
                for item, text in zip(chunk, texts):
                    rec, _ = self.record(item, text, images[item.identity.identity_id])
                    if (item.emotion, rec["prompt"]) in used and item.attempt < MAX_RESAMPLES:
                        todo.append(self.prepare(item.identity, item.emotion, vectors.get(item.emotion) or [],
                                                 item.attempt + 1))
                        continue
                    used.add((item.emotion, rec["prompt"]))
                    store.append(rec)
                    bar.update(1)
        return self.summarize(store, selection, emotions)

    def summarize(self, store: JsonlStore, selection: IdentitySelection, emotions: list[str]) -> dict:
        """Run-level counts over every prompt in the store (resumed ones included)."""
        stats = FilterStats()
        for rec in store:
            stats.add(FilterResult(rec["raw_text"], rec["prompt"], rec["asserted_aus"], rec["kept_aus"],
                                   rec["dropped_aus"], rec["fell_back"]))
        summary = {"prompts_file": str(store.path), "emotions": emotions, "identities": len(selection.chosen),
                   "identity_rejections": selection.reason_counts(), "backend": self.cfg.asi.vlm.backend,
                   **stats.as_dict()}
        atomic_write_json(self.out / "summary.json", summary)
        write_overview(self.out / "overview.png", selection, list(store))
        return summary


def write_overview(target: Path, selection: IdentitySelection, records: list[dict], max_faces: int = 12) -> Path:
    """Identity frames (left) and, per emotion, actions asserted vs dropped by the filter (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from argen_ray.io import atomic_path

    faces = selection.chosen[:max_faces]
    cols = min(4, max(1, len(faces)))
    rows = max(1, -(-len(faces) // cols))
    fig = plt.figure(figsize=(4 + 1.6 * cols, max(3.0, 1.7 * rows)))
    grid = fig.add_gridspec(rows, cols + 3)
    for i, face in enumerate(faces):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        ax.imshow(face.image)
        ax.set_title(f"{face.identity_id}\n{face.clip_id} f{face.frame_index}", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(grid[:, cols:])
    emotions = sorted({r["emotion"] for r in records})
    asserted = [sum(len(r["asserted_aus"]) for r in records if r["emotion"] == e) for e in emotions]
    dropped = [sum(len(r["dropped_aus"]) for r in records if r["emotion"] == e) for e in emotions]
    x = np.arange(len(emotions))
    fallbacks = [sum(bool(r["fell_back"]) for r in records if r["emotion"] == e) for e in emotions]
    ax.bar(x - 0.27, asserted, 0.27, label="actions asserted")
    ax.bar(x, dropped, 0.27, label="actions dropped (hallucinated)")
    ax.bar(x + 0.27, fallbacks, 0.27, label="prompts fallen back to template")
    ax.set_xticks(x, emotions)
    ax.set_ylabel("count")
    total = sum(asserted)
    ax.set_title(f"{len(records)} prompts, hallucination rate {sum(dropped) / total if total else 0:.1%}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return target

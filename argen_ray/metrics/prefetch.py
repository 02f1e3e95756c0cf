"""I3D features of the real clips, computed ahead in a background process (speed only).

The validity FVD (generation stage) and the generation metrics (FVD, tFVD, sFVD) go through one
on-disk cache of per-clip I3D logits (`<run_dir>/metrics/i3d-features/`, `metrics.fvd`). Most
of those clips are real clips, known as soon as the prompts exist, while several stages before
the metrics leave one of two cores idle (the prompt stage, the warp generator, the recognition
stage's one-thread head training). `I3DPrefetch` fills the cache there: a separate process
below the stages' priority (`NICENESS`) with one intra-op thread. A
stage that reads the cache stops it first and computes whatever is still missing itself, so
every metric is the same with or without it; only float rounding between one and two torch
threads can differ (measured: logits within 1e-5).

`real_clips_for_metrics` is the one definition of which real clips those metrics use.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from argen_ray.data.records import ClipRecord, Dataset

STOP_TIMEOUT_S = 10.0
# Below the stages (they run at 0) and level with the niced jobs of a shared machine: the work is
# needed later anyway, so a share of a busy core is no loss; at 19 it starved under load (measured).
NICENESS = 10


def real_clips_for_metrics(dataset: "Dataset", labels: Iterable[int], subjects: Iterable[str]) -> dict:
    """The real clips each I3D consumer scores, by consumer:

    - "validity": the training clips of the generated classes (`metrics.validity`);
    - "same_class": every clip of those classes (FVD, tFVD in `metrics.generation`);
    - "same_subject": the clips of those classes whose subject is one of the generated clips'
      subjects (sFVD). The paper assesses "all samples from scarce emotion classes" and groups
      them by subject, so a subject's happy or neutral clips are not its sFVD reference."""
    labels, subjects = set(labels), set(subjects)
    train = dataset.split("train") or dataset.records
    return {"validity": [r for r in train if r.label in labels],
            "same_class": [r for r in dataset.records if r.label in labels],
            "same_subject": [r for r in dataset.records if r.label in labels and r.subject in subjects]}


class I3DPrefetch:
    """A background process writing the I3D features of `sources` into `cache_dir` (module doc).

    `start()` launches it (a no-op when every clip is cached or one is running); `stop()` ends it
    and waits, leaving every finished clip's features in the cache and no partial file."""

    def __init__(self, sources: Iterable[str | os.PathLike], cache_dir: str | os.PathLike):
        self.sources = [str(s) for s in sources]
        self.cache_dir = Path(cache_dir)
        self.process: subprocess.Popen | None = None
        self.with_subjects = True  # False: built before the prompts named the subjects (run.py rebuilds it)
        self._job: Path | None = None

    def missing(self) -> list[str]:
        from argen_ray.metrics.fvd import _cache_file
        from argen_ray.metrics.i3d import NUM_FRAMES

        return [s for s in self.sources if not _cache_file(self.cache_dir, s, NUM_FRAMES).is_file()]

    def start(self) -> "I3DPrefetch":
        if self.process is not None and self.process.poll() is None:
            return self
        todo = self.missing()
        if not todo:
            return self
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, job = tempfile.mkstemp(prefix=".prefetch-", suffix=".json", dir=self.cache_dir)
        with os.fdopen(fd, "w") as fh:
            json.dump({"cache_dir": str(self.cache_dir), "sources": todo}, fh)
        self._job = Path(job)
        env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "argen_ray.metrics.prefetch", job], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)  # the child finishes its write and exits
                try:
                    self.process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        if self._job is not None:
            self._job.unlink(missing_ok=True)
            self._job = None

    def __enter__(self) -> "I3DPrefetch":
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop()


def main(argv: list[str]) -> int:
    """The background process: features of the job file's clips, one clip at a time."""
    import torch

    from argen_ray.errors import ArgenError
    from argen_ray.metrics.fvd import i3d_features
    from argen_ray.metrics.i3d import load_i3d

    signal.signal(signal.SIGTERM, _raise_stop)
    os.nice(NICENESS)
    torch.set_num_threads(1)
    job = json.loads(Path(argv[0]).read_text())
    try:
        model = load_i3d()
        for source in job["sources"]:  # one clip per call: a stop loses at most the clip in flight
            try:
                i3d_features([source], model=model, batch_size=1, progress=False, cache_dir=job["cache_dir"])
            except ArgenError:
                continue  # an unreadable clip: the consumer meets it and reports it
    except _Stop:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

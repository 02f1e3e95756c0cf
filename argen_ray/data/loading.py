"""The entry points: `load_dataset(kind, root, **options)` and `open_dataset(cfg)`."""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING

from argen_ray.data.adapters import ADAPTERS, ClipCollector
from argen_ray.data.records import Dataset, DatasetError

if TYPE_CHECKING:
    from argen_ray.config import Config

DEMO_DIRNAME = "demo-data"


def adapter_options(kind: str) -> dict[str, object]:
    """Options a kind accepts (name -> default), plus `verify` which every kind takes."""
    params = list(inspect.signature(ADAPTERS[kind]).parameters.values())[2:]
    return {p.name: p.default for p in params} | {"verify": "quick"}


def load_dataset(kind: str, root: str | os.PathLike, **options) -> Dataset:
    """Read a dataset into `ClipRecord`s on the canonical labels.

    kinds: dfew, ferv39k, ckplus, dferclip, manifest (see `argen_ray.data.adapters`). Every
    kind takes `verify="quick"` (check each clip's first frame) or `"full"` (decode every clip).
    Items that cannot be used are skipped and listed in `Dataset.skipped`; a `DatasetError`
    is raised when nothing usable is left.
    """
    if kind not in ADAPTERS:
        raise DatasetError(f"unknown dataset kind {kind!r}: expected one of {', '.join(ADAPTERS)}")
    # Absolute, so records stay valid in Ray workers that run from another directory.
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise DatasetError(f"{kind} dataset root {root} does not exist")
    if not root.is_dir() and kind != "manifest":
        raise DatasetError(f"{kind} dataset root {root} is not a directory")
    accepted = adapter_options(kind)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DatasetError(f"unknown option(s) {', '.join(unknown)} for dataset kind {kind!r}; "
                           f"accepted: {', '.join(accepted)}")
    with ClipCollector(kind, root, verify=options.pop("verify", "quick")) as collector:
        ADAPTERS[kind](collector, root, **options)
    return collector.finish()


def open_dataset(cfg: "Config") -> Dataset:
    """The run's dataset from `cfg.data`; `kind: demo` writes the demo dataset under the run
    directory on first use and reads it with the dfew adapter."""
    data = cfg.data
    options = dict(data.options)
    if data.kind == "demo":
        from argen_ray.data.demo import write_demo_dataset

        # Returns at once when the same dataset is complete there, resumes a killed write, and
        # refuses a demo dataset written with other parameters.
        demo = data.demo
        root = write_demo_dataset(Path(cfg.run_dir) / DEMO_DIRNAME, seed=demo.seed,
                                  num_identities=demo.num_identities, clips_per_identity=demo.clips_per_identity,
                                  frames=demo.frames, size=demo.size, min_test_clips=demo.min_test_clips,
                                  workers=demo.workers, progress=True)
        kind = "dfew"
    else:
        if data.root is None:
            raise DatasetError(f"data.root is required for data.kind={data.kind} (the dataset's directory)")
        root, kind = Path(data.root), data.kind
    if "fold" in adapter_options(kind):
        options.setdefault("fold", data.fold)
    return load_dataset(kind, root, **options)

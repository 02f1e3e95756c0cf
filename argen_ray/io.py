"""Atomic writes, resumable JSON-lines stores and reading ahead, shared by every stage.

Outputs are written to a temporary file beside the target and renamed into place, so a run
killed mid-write never leaves a half file; JSONL stores append one fsynced line per finished
item and skip items already present, so reruns resume instead of redoing.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from argen_ray.errors import ArgenError


class OutputError(ArgenError, OSError):
    """An output cannot be written where the config says (a run_dir that is a file, or not
    writable); the message names the path and why."""


def _why(exc: OSError) -> str:
    return {FileExistsError: "a file is in the way of a folder", NotADirectoryError: "a file is in the way of a folder",
            PermissionError: "permission denied"}.get(type(exc), exc.strerror or type(exc).__name__)


def ensure_dir(path: str | os.PathLike, writable: bool = False) -> Path:
    """`path` as an existing folder (created with its parents; `writable`: one this process may
    write in), or an `OutputError` naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {path}: {_why(exc)}"
                          f"{f' ({exc.filename})' if exc.filename and str(exc.filename) != str(path) else ''}; "
                          "check run_dir") from None
    if writable and not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"the output folder {path} is not writable; check run_dir")
    return path


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it onto `target`."""
    target = Path(target)
    ensure_dir(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or target.suffix, dir=target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {_why(exc)} in {target.parent}; check run_dir") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(target)


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(target, json.dumps(obj, indent=2, default=str) + "\n")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `<path>.lock` (processes of one machine; released on exit or death)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class JsonlStore:
    """An append-only JSONL file keyed by one field, for resumable per-item outputs.

    A torn last line (a run killed mid-append) is ignored on reading and overwritten cleanly.
    Reading and appending hold a file lock, so worker processes of one run (the recognition study's
    pairs) can share a store: a reader never rewrites the file under another's append.
    """

    def __init__(self, path: str | os.PathLike, key: str):
        self.path = Path(path)
        self.key = key
        self.records: dict[str, dict] = {}
        if not self.path.exists():
            return
        with _locked(self.path):
            good: list[str] = []
            text = self.path.read_text(encoding="utf-8")
            lines = text.splitlines()
            for line in lines:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # torn tail of an interrupted run
                if isinstance(rec, dict) and self.key in rec:
                    self.records[str(rec[self.key])] = rec
                    good.append(line)
            if len(good) != len(lines) or (text and not text.endswith("\n")):  # so that appends start on a clean line
                atomic_write_text(self.path, "".join(g + "\n" for g in good))

    def __contains__(self, item_key: object) -> bool:
        return str(item_key) in self.records

    def retain(self, keep) -> None:
        """Keep only the records for which `keep(record)` is true (atomically rewritten): work
        recorded after the state a rerun resumes from is redone, never listed twice."""
        self.records = {k: r for k, r in self.records.items() if keep(r)}
        with _locked(self.path):
            atomic_write_text(self.path, "".join(json.dumps(r, default=str) + "\n" for r in self.records.values()))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records.values())

    def append(self, record: dict) -> None:
        self.extend([record])

    def extend(self, records: list[dict]) -> None:
        """Append several records under one lock and one fsync (e.g. one training iteration's)."""
        for record in records:
            if self.key not in record:
                raise KeyError(f"record for {self.path} lacks its key field {self.key!r}")
        text = "".join(json.dumps(record, default=str) + "\n" for record in records)
        with _locked(self.path), open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        self.records.update((str(record[self.key]), record) for record in records)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file, naming the file and line of any malformed row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{i}: not valid JSON ({exc.msg})") from None
    return rows


def read_yaml_mapping(path: str | os.PathLike, what: str, error: type[Exception]) -> dict:
    """A YAML file that must hold a mapping (an empty file is {}); every problem is an `error`
    whose message starts with `what` and the path, e.g. "sweep file tune_configs/x.yaml ..."."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise error(f"{what} {path} is a folder; name a YAML file in it")
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not a text file (byte {exc.start} is not UTF-8); name a YAML file") from None
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise error(f"{what} {path} must hold a mapping at the top, got {type(loaded).__name__}")
    return loaded


Item = TypeVar("Item")
Made = TypeVar("Made")


def produce_ahead(items: Iterable[Item], produce: Callable[[Item], Made]) -> Iterator[tuple[Item, Made]]:
    """(item, produce(item)) in order, with the next item's `produce` already running in a
    background thread while the caller handles the current one.

    For work in two places: videos generated on the generator (an actor) and scored or written
    here, or clips decoded by ffmpeg and embedded here; done one after the other, each leaves the
    other's core idle. Results and their order are those of the plain loop. `produce` must only
    touch what the caller does not use meanwhile; its error is raised where its item would have
    been yielded."""
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    if not items:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="produce-ahead") as pool:
        pending = pool.submit(produce, items[0])
        for k, item in enumerate(items):
            made = pending.result()
            if k + 1 < len(items):
                pending = pool.submit(produce, items[k + 1])
            yield item, made

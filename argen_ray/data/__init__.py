"""Datasets: canonical labels, clip records, adapters per layout, frame sampling, scarce classes.

Video I/O lives in `argen_ray.data.video`; the demo dataset writer in `argen_ray.data.demo`.
"""
from argen_ray.data.labels import EMOTIONS, SCARCE_DEFAULT, LabelError, label_index, label_name
from argen_ray.data.loading import load_dataset, open_dataset
from argen_ray.data.records import ClipRecord, Dataset, DatasetError, SkipReport
from argen_ray.data.sampling import segment_indices, uniform_indices
from argen_ray.data.scarce import configured_scarce_classes, scarce_analysis, scarce_classes

__all__ = [
    "EMOTIONS", "SCARCE_DEFAULT", "ClipRecord", "Dataset", "DatasetError", "LabelError", "SkipReport",
    "configured_scarce_classes", "label_index", "label_name", "load_dataset", "open_dataset",
    "scarce_analysis", "scarce_classes", "segment_indices", "uniform_indices",
]

"""Scarce-class analysis (DESIGN 2): count below N/7*rho and, when known, recall below 0.5."""
from __future__ import annotations

import pytest
from rich.console import Console

from argen_ray.config import load_config
from argen_ray.data import DatasetError, EMOTIONS, configured_scarce_classes, scarce_analysis, scarce_classes
from argen_ray.data.records import ClipRecord, Dataset
from argen_ray.data.scarce import scarce_table


def _labels(counts: dict[str, int]) -> list[int]:
    return [EMOTIONS.index(name) for name, n in counts.items() for _ in range(n)]


# FERV39k train: 31,088 clips; surprise 2,502, disgust 1,833, fear 1,680 (the rest split evenly-ish).
FERV39K_LIKE = {"happy": 7000, "sad": 6000, "neutral": 7000, "angry": 5073,
                "surprise": 2502, "disgust": 1833, "fear": 1680}


def test_ferv39k_counts_give_surprise_disgust_fear():
    rows = scarce_analysis(_labels(FERV39K_LIKE))
    assert [r.name for r in rows] == EMOTIONS
    assert [r.name for r in rows if r.scarce] == ["surprise", "disgust", "fear"]
    assert rows[0].threshold == pytest.approx(31088 / 7 * 0.7)
    assert rows[4].share == pytest.approx(2502 / 31088)
    assert scarce_classes(_labels(FERV39K_LIKE)) == [4, 5, 6]


def test_dfew_fold1_surprise_is_above_the_count_threshold():
    # DFEW fold 1 train: 9,356 clips, surprise 1,175 > 9356/7*0.7 = 935.6: the count rule alone
    # finds disgust and fear; the paper's third class needs rho >= 0.88 or an explicit override.
    counts = {"happy": 2000, "sad": 1700, "neutral": 2000, "angry": 1644, "surprise": 1175, "disgust": 116, "fear": 721}
    assert sum(counts.values()) == 9356
    assert scarce_classes(_labels(counts)) == [5, 6]
    assert scarce_classes(_labels(counts), rho=0.9) == [4, 5, 6]
    assert scarce_classes(_labels(counts), override=["Surprise", "disgust", "fear"]) == [4, 5, 6]


def test_known_recall_keeps_well_recognised_rare_classes_off_the_list():
    labels = _labels(FERV39K_LIKE)
    got = scarce_classes(labels, recall={"surprise": 0.62, "disgust": 0.10, "happy": 0.2})
    assert got == [5, 6]  # surprise recognised well; happy is common; fear has no recall: count only
    row = scarce_analysis(labels, recall={"surprise": 0.62})[4]
    assert row.recall == 0.62 and not row.scarce


def test_bad_inputs():
    with pytest.raises(DatasetError, match="needs training labels"):
        scarce_analysis([])
    with pytest.raises(DatasetError, match="rho must be positive"):
        scarce_analysis([0, 1], rho=0)
    with pytest.raises(DatasetError, match=r"recall must lie in \[0, 1\]"):
        scarce_analysis([0, 1], recall={"sad": 1.5})


def test_config_override_and_table(tmp_path):
    ds = Dataset("manifest", tmp_path, records=[
        ClipRecord(str(i), tmp_path, label, split="train") for i, label in enumerate(_labels(
            {"happy": 30, "sad": 30, "neutral": 30, "angry": 30, "surprise": 3, "disgust": 2, "fear": 20}))])
    assert configured_scarce_classes(load_config(None), ds) == [4, 5]
    cfg = load_config(None, ["data.scarce_classes=[fear]"])
    assert configured_scarce_classes(cfg, ds) == [6]

    console = Console(record=True, width=120)
    console.print(scarce_table(scarce_analysis(ds.training_labels())))
    text = console.export_text()
    assert "4 surprise" in text and "2.1%" in text and "N/7*rho = 14.5" in text  # 145 clips
    yes_rows = [line for line in text.splitlines() if "yes" in line]
    assert len(yes_rows) == 2 and "surprise" in yes_rows[0] and "disgust" in yes_rows[1]

"""FERV39k adapter: official split lists with class names, frames under 2_ClipsforFaceCrop."""
from __future__ import annotations

from argen_ray.data import EMOTIONS, load_dataset
from data_layouts import write_frames

# FERV39k's seven class names as its lists spell them.
FERV39K_CLASSES = ["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]


def _write(root, train_lines, test_lines, sep=" "):
    setups = root / "4_setups" / "All_scenes"
    setups.mkdir(parents=True)
    for name, lines in (("train_All.csv", train_lines), ("test_All.csv", test_lines)):
        (setups / name).write_text("".join(f"{rel}{sep}{label}\n" for rel, label in lines))
        for rel, _ in lines:
            write_frames(root / "2_ClipsforFaceCrop" / rel, 3)


def test_class_names_map_to_canonical_labels(tmp_path):
    train = [(f"Action/{name}/{i:04d}", name) for i, name in enumerate(FERV39K_CLASSES)]
    _write(tmp_path, train, [("Argue/Sad/0010", "Sad")])
    ds = load_dataset("ferv39k", tmp_path)
    got = {r.clip_id: r.emotion for r in ds.split("train")}
    assert got == {f"Action/{n}/{i:04d}": n.lower() for i, n in enumerate(FERV39K_CLASSES)}
    test = ds.split("test")[0]
    assert test.label == EMOTIONS.index("sad") == 1
    assert test.source == tmp_path / "2_ClipsforFaceCrop" / "Argue" / "Sad" / "0010"
    assert test.num_frames == 3 and test.subject is None


def test_comma_separated_lists_and_custom_locations(tmp_path):
    _write(tmp_path, [("Daily/Fear/0001", "Fear")], [("Daily/Happy/0002", "happy")], sep=",")
    ds = load_dataset("ferv39k", tmp_path, train_list="4_setups/All_scenes/train_All.csv",
                      test_list=str(tmp_path / "4_setups" / "All_scenes" / "test_All.csv"))
    assert [(r.split, r.emotion) for r in ds.records] == [("train", "fear"), ("test", "happy")]

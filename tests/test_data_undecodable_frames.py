"""A clip whose later frames are corrupt passes the loader's quick check; reading it skips and
reports those frames, and recognition never aborts on it."""
from __future__ import annotations

import numpy as np
import pytest

from argen_ray.data import ClipRecord, load_dataset
from argen_ray.data.video import VideoReadError, read_frames_skipping_bad
from argen_ray.recognition.clips import ClipDataset
from data_layouts import write_dfew


@pytest.fixture
def corrupt_dfew(tmp_path):
    write_dfew(tmp_path, train={1: 5, 2: 7}, test={3: 6}, frames=16, frame_name="{}")
    (tmp_path / "Clip" / "clip_224x224" / "00001" / "12.jpg").write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "Clip" / "clip_224x224" / "00001" / "16.jpg").write_bytes(b"")
    return tmp_path


def test_bad_frames_are_skipped_and_named(corrupt_dfew):
    record = load_dataset("dfew", corrupt_dfew).split("train")[0]   # quick check: first frame opens
    frames, bad = read_frames_skipping_bad(record.source, [0, 11, 14, 15])
    assert sorted(bad) == [11, 15] and "12.jpg" in bad[11] and "16.jpg" in bad[15]
    assert frames[:, 0, 0, 0].tolist() == [0, 140]              # frames 0 and 14 (value 10 * i)
    with pytest.raises(VideoReadError, match="none of the 1 requested frames"):
        read_frames_skipping_bad(record.source, [11])


def test_recognition_reads_the_clip_with_its_nearest_good_frames(corrupt_dfew):
    records = load_dataset("dfew", corrupt_dfew).split("train")
    data = ClipDataset(records, num_segments=16, image_size=8, train=False)
    with pytest.warns(RuntimeWarning, match=r"clip 00001: 2 undecodable frame\(s\) \[11, 15\]"):
        clip, label = data[0]
    assert clip.shape == (16, 3, 8, 8) and label == records[0].label
    # the replaced frames hold their nearest decodable neighbour (frames 10 and 14)
    raw = clip * clip.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) \
        + clip.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    values = np.round(raw[:, 0, 0, 0].numpy() * 255).astype(int).tolist()
    assert values[11] == values[10] == 100 and values[15] == values[14] == 140

"""The embedded demo dataset: long-tailed synthetic face clips in DFEW's layout.

- `write_demo_dataset(out, seed=0, ...)`: the whole dataset (frames, fold CSVs, OpenFace CSVs).
- `au_to_landmarks(neutral_points, aus)`: FACS AUs -> 68 iBUG landmark positions (reusable on
  any frontal face's landmarks, e.g. by a warp-based generator).
- `render_face(landmarks, identity, size)`: a face image drawn from its landmarks.
"""
from argen_ray.data.demo.au_model import (MODELLED_AUS, OPENFACE_AUS, AUModelError, au_displacement, au_to_landmarks,
                                          face_frame, to_face_frame)
from argen_ray.data.demo.expressions import CLASS_SHARES, PROTOTYPES
from argen_ray.data.demo.identity import Identity, neutral_template, sample_identity
from argen_ray.data.demo.render import RenderError, render_face
from argen_ray.data.demo.writer import DEMO_VERSION, DemoDataError, write_demo_dataset

__all__ = [
    "AUModelError", "CLASS_SHARES", "DEMO_VERSION", "DemoDataError", "Identity", "MODELLED_AUS", "OPENFACE_AUS",
    "PROTOTYPES", "RenderError", "au_displacement", "au_to_landmarks", "face_frame", "neutral_template",
    "render_face", "sample_identity", "to_face_frame", "write_demo_dataset",
]

"""Recognition baselines trained on original vs augmented data (DESIGN 2.4).

- `models`: Res18_LSTM, Res18_Transformer, VGG13_LSTM, VGG13_Transformer (`MODELS`, `build_model`).
- `metrics`: `war_uar`, `confusion_matrix`, plots.
- `clips`: DFER-CLIP segment sampling (`ClipDataset`), generated clips (`read_generated_clips`).
- `train`: one resumable (model, fold, variant) unit (`train_and_evaluate`), checkpoints.
- `protocols`: `compare_original_vs_augmented(cfg, dataset, generated_manifest)` and
  `run_protocol(cfg, generated_manifest)` (DFEW 5-fold, official split, CK+ zero-shot).

Submodules import torch; import them directly.
"""

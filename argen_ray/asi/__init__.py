"""ASI — Affective Semantic Injection (DESIGN 2.1): the prompt stage of ARGen.

au.py (AU estimation backends), identity.py (identity frames), knowledge.py + facs_kb.yaml
(FACS knowledge base), retrieval.py (MiniLM retrieval), vlm.py + qwen_vl.py (VLM backends),
filter.py (hallucination filter), pipeline.py (dataset -> prompts.jsonl).
"""

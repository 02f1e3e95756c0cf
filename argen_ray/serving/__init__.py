"""The Ray Serve app: the trained policy and online generation over HTTP (docs/serve.md).

- `schemas`: request/response bodies and `RequestError` (every bad request, with its field);
- `images`: base64 PNG/JPEG -> checked RGB array, face check;
- `policy`: where the policy comes from (checkpoint or MLflow) and `PolicyService`;
- `generation`: `PromptService` (ASI for one face) and `GenerationService`;
- `app`: the deployments, the FastAPI ingress, `build_app(cfg)` and `start(cfg)`.
"""

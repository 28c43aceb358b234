"""The OpenAI-compatible API under /v1/ (docs/api.md): personal keys, admission (admission.py: check, then do),
relay, OpenAPI document."""

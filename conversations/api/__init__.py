"""The OpenAI-compatible API under /v1/ (CONTRACTS §6): personal keys, admission, relay, OpenAPI document."""

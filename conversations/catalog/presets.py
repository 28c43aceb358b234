"""Provider presets: known OpenAI-compatible services with their base URL and the switches they need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Parameter names as in upstream.params.PARAM_SPECS. Only open-weights servers (vLLM, llama.cpp, DeepInfra,
# ...) know these; OpenAI and its imitators answer 400 ("Unrecognized request argument").
OPEN_WEIGHTS_ONLY = ["min_p", "top_k", "repetition_penalty"]


@dataclass(frozen=True)
class ProviderPreset:
    """What a new provider of this kind starts with; the admin still reviews every field before saving."""

    slug: str
    label: str
    base_url: str
    send_stream_options: bool = True
    dropped_params: list[str] = field(default_factory=list)
    extra_headers: dict[str, str] = field(default_factory=dict)
    needs_key: bool = True
    note: str = ""

    def initial(self) -> dict[str, Any]:
        """Initial values for the provider form (a fresh list and dict each time)."""
        return {
            "name": self.slug,
            "base_url": self.base_url,
            "send_stream_options": self.send_stream_options,
            "dropped_params": list(self.dropped_params),
            "extra_headers": dict(self.extra_headers),
        }


PRESETS: dict[str, ProviderPreset] = {
    p.slug: p
    for p in (
        ProviderPreset(
            "deepinfra",
            "DeepInfra",
            "https://api.deepinfra.com/v1/openai",
            note="Sends usage with its own estimated_cost on the last chunk; that cost is what it bills.",
        ),
        ProviderPreset(
            "deepauto",
            "DeepAuto",
            "https://lang.deepauto.ai/v1",
            send_stream_options=False,
            note="stream_options is not documented: usage of streamed replies may be estimated. "
            "Turn it on if Test connection reports no usage and the upstream accepts it.",
        ),
        ProviderPreset(
            "deeptrin",
            "Deeptrin",
            "https://api.deeptrin.com/inference-api/openai/v1",
            send_stream_options=False,
            dropped_params=["min_p", "top_k", "seed", "user"],
            note="Documents only model, messages/prompt, max_tokens, stream, temperature, top_p, stop, n, "
            "the three penalties and logit_bias. Its migration guide also names "
            "https://inference-api.deeptrin.ai/inference-api/openai/v1.",
        ),
        ProviderPreset(
            "aleph-alpha",
            "Aleph Alpha",
            "https://api.aleph-alpha.com",
            send_stream_options=False,
            note="No /v1 in the path: the openai client is pointed at https://api.aleph-alpha.com itself "
            "(or your on-premise URL) and appends /chat/completions.",
        ),
        ProviderPreset(
            "local-proxy",
            "Local OpenAI-compatible proxy",
            "http://localhost:8000/v1",
            send_stream_options=False,
            note="Takes the proxy's own API key. Port 8000 is also chatweb's: run one of the two on another "
            "port. Some proxies report zero usage; chatweb then estimates the tokens.",
        ),
        ProviderPreset("openai", "OpenAI", "https://api.openai.com/v1", dropped_params=OPEN_WEIGHTS_ONLY),
        ProviderPreset(
            "openrouter",
            "OpenRouter",
            "https://openrouter.ai/api/v1",
            extra_headers={"X-Title": "chatweb"},
            note="Sends usage with its own cost; keep-alive comments while a model warms up are expected.",
        ),
        ProviderPreset("together", "Together AI", "https://api.together.xyz/v1"),
        ProviderPreset(
            "groq",
            "Groq",
            "https://api.groq.com/openai/v1",
            dropped_params=[*OPEN_WEIGHTS_ONLY, "logit_bias"],
            note="Rejects logit_bias and the open-weights sampling parameters; n must be 1.",
        ),
        ProviderPreset(
            "mistral",
            "Mistral AI",
            "https://api.mistral.ai/v1",
            send_stream_options=False,
            dropped_params=[*OPEN_WEIGHTS_ONLY, "logit_bias", "seed", "user"],
            note="Refuses unknown fields (422); usage comes on the last chunk without stream_options.",
        ),
        ProviderPreset(
            "ollama",
            "Ollama",
            "http://localhost:11434/v1",
            needs_key=False,
            dropped_params=["logit_bias"],
            note="No key needed. Import models to list what has been pulled.",
        ),
        ProviderPreset(
            "vllm",
            "vLLM",
            "http://localhost:8000/v1",
            needs_key=False,
            note="Key only if started with --api-key. Port 8000 is also chatweb's: move one.",
        ),
        ProviderPreset(
            "llamacpp",
            "llama.cpp server",
            "http://localhost:8080/v1",
            needs_key=False,
            note="Key only if started with --api-key.",
        ),
        ProviderPreset(
            "litellm",
            "LiteLLM proxy",
            "http://localhost:4000/v1",
            note="Takes a LiteLLM virtual key; model ids are the proxy's model_name entries.",
        ),
    )
}


def preset_get(slug: str | None) -> ProviderPreset | None:
    """The preset of that slug, or None (unknown or empty)."""
    return PRESETS.get(slug or "")

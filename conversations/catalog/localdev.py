"""The development upstream's models: what it serves (conversations/devupstream/app.py) and what `bootstrap`
registers for `make run`, from this one list (docs/devupstream.md states the same figures, a test checks it)."""

from __future__ import annotations

from dataclasses import dataclass

DEV_PROVIDER_NAME = "dev-upstream"


@dataclass(frozen=True)
class DevModelSpec:
    """One development model; prices are made up (USD per 1M tokens), so costs show."""

    id: str
    api: str  # "chat" or "completions"
    input_price: str
    output_price: str
    context_length: int
    display_name: str
    description: str
    reasoning: bool = False
    max_output_tokens: int = 1024
    vision: bool = False  # registered with `vision = true`: it describes the images and texts it gets
    listed: bool = True  # in the upstream's /v1/models (an import of its models takes the listed ones)


DEV_MODELS = [
    DevModelSpec("dev-chat", "chat", "0.50", "1.50", 32768, "Dev chat", "Offline test model: markdown prose"),
    DevModelSpec(
        "dev-reasoner", "chat", "1.00", "4.00", 32768, "Dev reasoner", "Offline test model: thinks, then answers",
        reasoning=True,
    ),
    DevModelSpec(
        "dev-complete", "completions", "0.20", "0.60", 8192, "Dev completion", "Offline test model: prompt only"
    ),
    DevModelSpec(
        "dev-vision", "chat", "0.50", "1.50", 32768, "Dev vision",
        "Offline test model: says what images and documents it received", vision=True, listed=False,
    ),
]

"""Builds upstream request bodies from a conversation: chat messages, or a prompt for completion-only models."""

from __future__ import annotations

from typing import Any

from conversations.models import Message, Model

# The documented template for completion-only models (docs/protocol.md): a plain transcript that ends
# with the assistant's turn, so the model continues as the assistant.
COMPLETION_SYSTEM = "{system}\n\n"
COMPLETION_TURN = {"user": "User: {content}\n", "assistant": "Assistant: {content}\n"}
COMPLETION_CUE = "Assistant:"
COMPLETION_STOP = ["\nUser:"]


def chat_messages(system: str, branch: list[Message]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    for message in branch:
        if message.role in (Message.Role.USER, Message.Role.ASSISTANT) and (
            message.content or message.role == "user"
        ):
            messages.append({"role": message.role, "content": message.content})
    return messages


def completion_prompt(messages: list[dict[str, str]]) -> str:
    """Render chat messages into one prompt, as the template above says."""
    parts: list[str] = []
    for message in messages:
        if message["role"] == "system":
            parts.append(COMPLETION_SYSTEM.format(system=message["content"]))
        else:
            parts.append(COMPLETION_TURN[message["role"]].format(content=message["content"]))
    parts.append(COMPLETION_CUE)
    return "".join(parts)


def upstream_request(
    model: Model, messages: list[dict[str, str]], params: dict[str, Any]
) -> tuple[str, dict]:
    """(path, body) for the model's API kind; `params` already validated and filtered for the provider."""
    if model.api == Model.Api.COMPLETIONS:
        body = {"model": model.upstream_id, "prompt": completion_prompt(messages), **params}
        body.setdefault("stop", COMPLETION_STOP)
        return "/completions", body
    return "/chat/completions", {"model": model.upstream_id, "messages": messages, **params}

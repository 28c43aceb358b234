"""Builds upstream request bodies from a conversation: chat messages, or a prompt for completion-only models."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from conversations.chat.attachments import attachment_data_url, attachment_parts
from conversations.chat.selectors import BranchLine
from conversations.models import Attachment, Message, Model

# The documented template for completion-only models (docs/protocol.md): a plain transcript that ends
# with the assistant's turn, so the model continues as the assistant.
COMPLETION_SYSTEM = "{system}\n\n"
COMPLETION_TURN = {"user": "User: {content}\n", "assistant": "Assistant: {content}\n"}
COMPLETION_CUE = "Assistant:"
COMPLETION_STOP = ["\nUser:"]


DEFAULT_CONTEXT_TOKENS = 32_768  # a model whose context length is unknown
CHARS_PER_TOKEN = 3  # a cautious average, to cut attached documents' text to what the context holds
DOCUMENT_SHARE = 0.6  # of the context, for all the attached documents of a conversation together


def document_chars(model: Model | None, documents: int) -> int:
    """How many characters of text each of `documents` attached documents may bring into the context."""
    context = (model.context_length if model is not None else None) or DEFAULT_CONTEXT_TOKENS
    return max(1_000, int(context * CHARS_PER_TOKEN * DOCUMENT_SHARE) // max(documents, 1))


def chat_messages(
    system: str, branch: Sequence[Message | BranchLine], attachments: dict[int, list[Attachment]] | None = None,
    model: Model | None = None, image_url: Callable[[Attachment], str] = attachment_data_url,
) -> list[dict[str, Any]]:
    """The chat history for the upstream; user messages with attachments as content parts (images as data URLs, or
    `image_url` of each)."""
    attachments = attachments or {}
    documents = sum(1 for found in attachments.values() for a in found if a.kind == Attachment.Kind.DOCUMENT)
    chars = document_chars(model, documents)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in branch:
        if message.role in (Message.Role.USER, Message.Role.ASSISTANT) and (
            message.content or message.role == "user"
        ):
            if message.role == Message.Role.USER and attachments.get(message.pk):
                parts = attachment_parts(
                    message.content, attachments[message.pk], document_chars=chars, image_url=image_url
                )
                messages.append({"role": message.role, "content": parts})
            else:
                messages.append({"role": message.role, "content": message.content})
    return messages


def _text(content: Any) -> str:
    # A completion-only model reads text: the text parts of a message with attachments.
    if isinstance(content, list):
        return "\n\n".join(p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def completion_prompt(messages: list[dict[str, Any]]) -> str:
    """Render chat messages into one prompt, as the template above says."""
    parts: list[str] = []
    for message in messages:
        if message["role"] == "system":
            parts.append(COMPLETION_SYSTEM.format(system=message["content"]))
        else:
            parts.append(COMPLETION_TURN[message["role"]].format(content=_text(message["content"])))
    parts.append(COMPLETION_CUE)
    return "".join(parts)


def upstream_request(
    model: Model, messages: list[dict[str, Any]], params: dict[str, Any]
) -> tuple[str, dict]:
    """(path, body) for the model's API kind; `params` already validated and filtered for the provider."""
    if model.api == Model.Api.COMPLETIONS:
        body = {"model": model.upstream_id, "prompt": completion_prompt(messages), **params}
        body.setdefault("stop", COMPLETION_STOP)
        return "/completions", body
    return "/chat/completions", {"model": model.upstream_id, "messages": messages, **params}

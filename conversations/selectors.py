"""Reads shared by views, consumers and the API: a user's models, a conversation's branch, a provider's target."""

from __future__ import annotations

from conversations.models import Conversation, Message, Model, Provider, User
from conversations.upstream.client import UpstreamTarget


def model_for_user(user: User, public_name: str) -> Model | None:
    """The enabled model of that public name, if this user may use it."""
    return Model.objects.for_user(user).filter(public_name=public_name).first()


def conversation_branch(conversation: Conversation, leaf_id: int | None = None) -> list[Message]:
    """The messages from the root to `leaf_id` (default: the conversation's active leaf), in one query."""
    messages = {m.pk: m for m in Message.objects.filter(conversation=conversation).select_related(None)}
    leaf_id = leaf_id or conversation.active_leaf_id
    if leaf_id is None and messages:
        leaf_id = max(messages.values(), key=lambda m: (m.created_at, m.pk)).pk
    branch: list[Message] = []
    seen: set[int] = set()
    while leaf_id is not None and leaf_id in messages and leaf_id not in seen:
        seen.add(leaf_id)
        message = messages[leaf_id]
        branch.append(message)
        leaf_id = message.parent_id
    branch.reverse()
    return branch


def upstream_target(provider: Provider) -> UpstreamTarget:
    return UpstreamTarget(
        base_url=provider.base_url,
        api_key=str.__str__(provider.api_key) if provider.api_key else None,
        headers=dict(provider.extra_headers or {}),
        send_stream_options=provider.send_stream_options,
        connect_timeout=provider.connect_timeout,
        first_token_timeout=provider.first_token_timeout,
        read_timeout=provider.read_timeout,
        max_retries=provider.max_retries,
    )

"""The upstream client's view of a provider: where to send, with which key and limits."""

from __future__ import annotations

from conversations.models import Provider
from conversations.upstream.client import UpstreamTarget


def upstream_target(provider: Provider) -> UpstreamTarget:
    return UpstreamTarget(
        base_url=provider.base_url,
        api_key=str.__str__(provider.api_key) if provider.api_key else None,
        headers={**(provider.extra_headers or {}), **provider.secret_header_values},
        send_stream_options=provider.send_stream_options,
        connect_timeout=provider.connect_timeout,
        first_token_timeout=provider.first_token_timeout,
        read_timeout=provider.read_timeout,
        max_retries=provider.max_retries,
        cost_lookup=provider.cost_lookup,
    )

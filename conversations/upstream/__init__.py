"""The upstream client: SSE decoding, provider dialects normalised to typed events, HTTP to providers (no Django)."""

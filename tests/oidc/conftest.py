"""The test OpenID provider, one per module, with chatweb's test client registered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.oidc.provider import TESTSERVER, OidcProvider, account


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    started = OidcProvider(
        sites=[TESTSERVER],
        accounts={
            "ada": account("ada@lab.example", groups=["lab"], preferred_username="ada", given_name="Ada"),
            "eve": account("eve@elsewhere.example", verified=False, groups=[]),
        },
    )
    yield started
    started.stop()

"""The database lanes' shared transactions (conversations/db.py `together`): calls queued while the lane is busy
run in one transaction, each in a savepoint of its own; one that fails leaves the others' writes committed."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import connection, transaction

from conversations import db
from conversations.errors import NotFound
from conversations.models import User

pytestmark = pytest.mark.django_db(transaction=True)


def create_user(name: str, *, fail: bool = False) -> tuple[str, bool, int]:
    """A user named `name` (then NotFound when `fail`): what a domain error after a write looks like."""
    User.objects.create(username=name)
    if fail:
        raise NotFound("refused after writing")
    return name, connection.in_atomic_block, len(connection.savepoint_ids)


def usernames() -> set[str]:
    return set(User.objects.filter(username__startswith="burst").values_list("username", flat=True))


async def test_calls_queued_together_share_one_transaction_and_a_failure_stays_its_own() -> None:
    lane = db.DbThreads("test-together")
    gate = threading.Event()
    busy = lane.submit(gate.wait, 10)  # the lane's one thread is busy: the calls below queue behind it
    calls = [lane.submit_together(create_user, f"burst{i}", fail=i == 3) for i in range(8)]
    gate.set()
    await busy
    results = await asyncio.gather(*calls, return_exceptions=True)

    assert isinstance(results[3], NotFound)
    ok = [r for i, r in enumerate(results) if i != 3]
    # Each in order, in a savepoint (one level) of the one shared transaction.
    assert ok == [(f"burst{i}", True, 1) for i in range(8) if i != 3]
    assert await lane.run(usernames) == {f"burst{i}" for i in range(8) if i != 3}


async def test_a_call_alone_runs_in_its_own_transaction_only() -> None:
    lane = db.DbThreads("test-alone")
    name, in_atomic, savepoints = await lane.together(create_user, "burst-alone")
    assert (name, in_atomic, savepoints) == ("burst-alone", False, 0)
    with pytest.raises(NotFound):
        await lane.together(create_user, "burst-refused", fail=True)
    assert await lane.run(usernames) == {"burst-alone", "burst-refused"}  # no transaction: its write stays


def break_the_transaction(name: str) -> str:
    """A write, then, inside a shared transaction, its savepoint released and a rollback asked for: rolling back to
    the savepoint fails, so the shared transaction is marked for rollback (every call's writes would be undone)."""
    User.objects.create(username=name)
    if connection.savepoint_ids:
        connection.savepoint_commit(connection.savepoint_ids[-1])
        transaction.set_rollback(True)
    return name


async def test_a_failed_shared_transaction_runs_each_call_again_alone() -> None:
    lane = db.DbThreads("test-again")
    gate = threading.Event()
    busy = lane.submit(gate.wait, 10)
    calls = [lane.submit_together(create_user, "burst-a"), lane.submit_together(break_the_transaction, "burst-b"),
             lane.submit_together(create_user, "burst-c")]
    gate.set()
    await busy
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert [r[0] if isinstance(r, tuple) else r for r in results] == ["burst-a", "burst-b", "burst-c"]
    assert await lane.run(usernames) == {"burst-a", "burst-b", "burst-c"}

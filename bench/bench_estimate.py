"""`chat.estimate` for a 100-message conversation on one process: in-process (the service alone) and over the real
websocket (one Daphne, a client sending estimates one after another, as a person typing does). Goal: ≤ 20 ms.

    python -m bench.bench_estimate [--messages 100] [--runs 200]

A throwaway SQLite database in a temporary directory (DATABASE_URL in the environment is ignored): one user with
a session, one priced model, one conversation of --messages messages (questions and the development upstream's
markdown answers, about 170 tokens each). Times are the median, p95 and max of --runs estimates after 10 warm-up
ones (the first loads the tokenizer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.process import Service, daphne_argv, free_port  # noqa: E402

TARGET_MS = 20.0
WARM_UP = 10
QUESTION = "And how would that change if the pipeline ran twice a day, with the cache in front of the queue?"


def environment(workdir: Path) -> dict[str, str]:
    from cryptography.fernet import Fernet

    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "CHATWEB_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def stats(times_ms: list[float]) -> dict[str, float]:
    ordered = sorted(times_ms)
    return {
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        "max": ordered[-1],
    }


def prepare_and_time_in_process(messages: int, runs: int) -> dict:
    """In the child: migrate, fill the conversation, time `reply_estimate` itself; print what the parent needs."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")
    import django

    django.setup()
    from decimal import Decimal

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from conversations.chat.admission import reply_estimate
    from conversations.chat.commands import ChatEstimate
    from conversations.devupstream import replies
    from conversations.models import Conversation, Message, Model, Provider, User
    from conversations.upstream.tokens import count_tokens

    call_command("migrate", interactive=False, verbosity=0)
    unusable = "!unusable"  # no password: a session only
    user = User.objects.create(username="estimator", password=unusable)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    provider = Provider.objects.create(name="dev", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, upstream_id="dev-chat", input_price=Decimal("0.5"),
                                 output_price=Decimal("1.5"), context_length=131072, max_output_tokens=1024)
    conversation = Conversation.objects.create(owner=user, title="a long chat", system_prompt="Be precise.")
    parent, history_tokens = None, 0
    for i in range(messages // 2):
        question = f"Question {i}: how do I handle step {i} of the pipeline when the queue backs up?"
        answer = replies.generate(replies.seed_of(i), question, reasoning=False, markdown=True, length=None)[1].text
        parent = Message.objects.create(conversation=conversation, parent=parent, role="user", content=question)
        parent = Message.objects.create(conversation=conversation, parent=parent, role="assistant", content=answer,
                                        model=model, model_name=model.public_name, status="complete")
        history_tokens += count_tokens(question) + count_tokens(answer)
    Conversation.objects.filter(pk=conversation.pk).update(active_leaf=parent)

    command = ChatEstimate(request_id="e", conversation_id=conversation.pk, model=model.public_name,
                           content=QUESTION, params={})
    times = []
    answer = {}
    for i in range(WARM_UP + runs):
        started = time.perf_counter()
        answer = reply_estimate(user=user, command=command)
        if i >= WARM_UP:
            times.append((time.perf_counter() - started) * 1000)
    return {
        "cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}",
        "conversation_id": conversation.pk,
        "model": model.public_name,
        "messages": Message.objects.filter(conversation=conversation).count(),
        "history_tokens": history_tokens,
        "prompt_tokens": answer["prompt_tokens"],
        "in_process": stats(times),
    }


async def time_over_websocket(origin: str, spec: dict, runs: int) -> dict[str, float]:
    from websockets.asyncio.client import connect

    url = origin.replace("http", "ws") + "/ws/chat/"
    times = []
    async with connect(url, origin=origin, additional_headers={"Cookie": spec["cookie"]}, compression=None) as ws:
        for i in range(WARM_UP + runs):
            frame = {"type": "chat.estimate", "request_id": f"e{i}", "conversation_id": spec["conversation_id"],
                     "model": spec["model"], "content": QUESTION, "params": {}}
            started = time.perf_counter()
            await ws.send(json.dumps(frame))
            while True:
                answer = json.loads(await ws.recv())
                if answer.get("request_id") == f"e{i}":
                    break
            elapsed = (time.perf_counter() - started) * 1000
            if answer["type"] != "chat.estimate":
                raise RuntimeError(f"estimate refused: {answer}")
            if answer["prompt_tokens"] != spec["prompt_tokens"]:
                raise RuntimeError(f"the socket's estimate differs from the service's: {answer} vs {spec}")
            if i >= WARM_UP:
                times.append(elapsed)
    return stats(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(prepare_and_time_in_process(args.messages, args.runs)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        workdir = Path(tmp)
        env = environment(workdir)
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_estimate", "--child", f"--messages={args.messages}",
             f"--runs={args.runs}"], cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"preparing failed:\n{out.stderr[-3000:]}")
        spec = json.loads(out.stdout.strip().splitlines()[-1])
        port = free_port()
        daphne = Service(daphne_argv(port), env, workdir / "daphne.log", port)
        try:
            socket = asyncio.run(time_over_websocket(daphne.url, spec, args.runs))
        finally:
            daphne.stop()
    print(f"chat.estimate, a conversation of {spec['messages']} messages ({spec['history_tokens']:,} tokens of "
          f"history; the estimate: {spec['prompt_tokens']:,} prompt tokens), {args.runs} runs, goal ≤ {TARGET_MS:g} ms")
    worst = 0.0
    for name, figures in (("in-process (reply_estimate)", spec["in_process"]), ("over the websocket", socket)):
        print(f"  {name:<30} median {figures['median']:6.2f} ms   p95 {figures['p95']:6.2f} ms   "
              f"max {figures['max']:6.2f} ms")
        worst = max(worst, figures["median"])
    print("  goal met" if worst <= TARGET_MS else f"  GOAL MISSED: median {worst:.2f} ms > {TARGET_MS:g} ms")


if __name__ == "__main__":
    main()

"""Import conversations from another tool's export: ChatGPT's `conversations.json` and chatweb's own JSON export
(one conversation, as /c/<id>/export.json gives, or a list of them).

A file is read whole and checked before anything is written: a malformed file is refused with the first bad entry
named (ImportRefused), and an accepted one is written in one transaction, so nothing is ever half-imported.
Branches are kept (every node becomes a message with its parent), the branch shown is the export's (ChatGPT's
`current_node`, chatweb's `active_leaf_id`), timestamps are kept, and content of kinds chatweb cannot show
(code-interpreter runs, browsing results, ...) becomes readable text rather than being dropped. Imported
replies cost nothing here: they are not written to the usage ledger.

Importing is idempotent per user: each conversation carries where it came from (`Conversation.import_key`:
ChatGPT's conversation id, or a digest of a chatweb export's entry) and one already imported by the same user is
skipped, neither duplicated nor changed (delete it first to import it afresh).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from conversations.catalog.access import model_for_user
from conversations.errors import BadRequest
from conversations.models import Conversation, Message, Model, User
from conversations.upstream.params import ParamError, validate_params

TITLE_MAX = 200
MODEL_NAME_MAX = 320
BUSY = (Message.Status.STREAMING, Message.Status.PENDING)


class ImportRefused(BadRequest):
    """The file is not an export chatweb can read; the message names the first bad entry."""


@dataclass
class ParsedMessage:
    key: str  # the export's id for the message
    parent: str | None
    role: str
    content: str
    reasoning: str = ""
    status: str = Message.Status.COMPLETE
    finish_reason: str = ""
    model_name: str = ""
    created_at: dt.datetime | None = None


@dataclass
class ParsedConversation:
    import_key: str
    title: str
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    messages: list[ParsedMessage]  # parents before children
    active: str | None
    model_name: str = ""
    system_prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportResult:
    conversations: int
    messages: int
    skipped: int

    def summary(self) -> str:
        return f"imported {self.conversations} conversations, {self.messages} messages"


# --- reading a file -----------------------------------------------------------------------------------------
def parse_export(raw: bytes | str) -> list[ParsedConversation]:
    """Every conversation of an export file, checked (ImportRefused naming the first bad entry)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImportRefused(f"The file is not JSON: {exc}.") from None
    if isinstance(data, dict) and "messages" in data:
        return [_chatweb(data, "conversation 1")]
    if not isinstance(data, list):
        raise ImportRefused(
            "The file is neither ChatGPT's conversations.json (a list of conversations) nor a chatweb export."
        )
    parsed = []
    for index, entry in enumerate(data, start=1):
        where = f"conversation {index}"
        if isinstance(entry, dict) and isinstance(entry.get("title"), str) and entry["title"].strip():
            where += f" ({entry['title'].strip()[:60]!r})"
        if not isinstance(entry, dict):
            raise ImportRefused(f"{where}: not an object.")
        if "mapping" in entry:
            parsed.append(_chatgpt(entry, where))
        elif "messages" in entry:
            parsed.append(_chatweb(entry, where))
        else:
            raise ImportRefused(f"{where}: has neither a ChatGPT 'mapping' nor chatweb 'messages'.")
    return parsed


def _digest(entry: Any) -> str:
    return hashlib.sha256(json.dumps(entry, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:40]


def _epoch(value: Any, where: str) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImportRefused(f"{where}: a time is not a number of seconds: {value!r}.")
    try:
        return dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise ImportRefused(f"{where}: a time is out of range: {value!r}.") from None


def _iso(value: Any, where: str) -> dt.datetime | None:
    if value in (None, ""):
        return None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise ImportRefused(f"{where}: not a date and time: {value!r}.")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, dt.UTC)


def _ordered(messages: dict[str, ParsedMessage], where: str) -> list[ParsedMessage]:
    """Parents before children, siblings oldest first; refuses cycles and parents that are not in the file."""
    children: dict[str | None, list[ParsedMessage]] = {}
    for m in messages.values():
        if m.parent is not None and m.parent not in messages:
            raise ImportRefused(f"{where}: message {m.key!r} has a parent {m.parent!r} that is not in the file.")
        children.setdefault(m.parent, []).append(m)
    floor = dt.datetime.min.replace(tzinfo=dt.UTC)
    ordered: list[ParsedMessage] = []
    todo = sorted(children.get(None, []), key=lambda m: (m.created_at or floor), reverse=True)
    while todo:
        m = todo.pop()
        ordered.append(m)
        todo.extend(sorted(children.get(m.key, []), key=lambda c: (c.created_at or floor), reverse=True))
    if len(ordered) != len(messages):
        raise ImportRefused(f"{where}: its messages' parents form a loop.")
    return ordered


# --- ChatGPT --------------------------------------------------------------------------------------------------
def _fence(text: str, language: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{language}\n{text.rstrip()}\n{ticks}"


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, dict):
        kind = part.get("content_type", "")
        if isinstance(part.get("text"), str):
            return part["text"]
        if "image" in str(kind):
            return "[image]"
        if "audio" in str(kind):
            return "[audio]"
        return f"[{kind or 'attachment'}]"
    return json.dumps(part, ensure_ascii=False)


def chatgpt_content_text(content: dict[str, Any]) -> tuple[str, str]:
    """A ChatGPT message's content as (text, reasoning), every content type as something a person can read."""
    kind = content.get("content_type", "")
    parts = content.get("parts")
    if kind in ("text", "multimodal_text") and isinstance(parts, list):
        return "\n\n".join(t for t in (_part_text(p) for p in parts) if t), ""
    if kind == "code":
        language = content.get("language") or ""
        language = "" if language == "unknown" else str(language)
        return _fence(str(content.get("text", "")), language), ""
    if kind == "execution_output":
        return "Output:\n\n" + _fence(str(content.get("text", ""))), ""
    if kind == "thoughts" and isinstance(content.get("thoughts"), list):
        pieces = []
        for thought in content["thoughts"]:
            if isinstance(thought, dict):
                pieces.append("\n".join(str(thought[k]) for k in ("summary", "content") if thought.get(k)))
        return "", "\n\n".join(p for p in pieces if p)
    if kind == "reasoning_recap":
        return "", str(content.get("content", ""))
    if kind == "tether_quote":
        title, url, text = content.get("title", ""), content.get("url", ""), str(content.get("text", ""))
        quoted = "\n".join(f"> {line}" for line in text.splitlines())
        return f"Quote from {title or url} ({url})\n\n{quoted}".strip(), ""
    if kind == "tether_browsing_display":
        return str(content.get("result") or content.get("summary") or ""), ""
    if kind == "system_error":
        return f"Error ({content.get('name', 'system')}): {content.get('text', '')}", ""
    # Unknown kinds: their text where there is one, else the whole content as JSON, labelled with its kind.
    if isinstance(parts, list) and parts:
        return f"[{kind}]\n\n" + "\n\n".join(_part_text(p) for p in parts), ""
    if isinstance(content.get("text"), str):
        return f"[{kind}]\n\n" + content["text"], ""
    rest = {k: v for k, v in content.items() if k != "content_type"}
    return f"[{kind}]\n\n" + _fence(json.dumps(rest, ensure_ascii=False, indent=2), "json"), ""


def _chatgpt_message(node_id: str, message: Any, where: str) -> tuple[str, str, str, str, dt.datetime | None] | None:
    """(role, text, reasoning, model, time) of a node's message; None for what ChatGPT itself hides."""
    if message is None:
        return None
    here = f"{where}, node {node_id!r}"
    if not isinstance(message, dict):
        raise ImportRefused(f"{here}: 'message' is not an object.")
    author = message.get("author")
    role = author.get("role") if isinstance(author, dict) else None
    if not isinstance(role, str) or not role:
        raise ImportRefused(f"{here}: the message has no author role.")
    content = message.get("content")
    if not isinstance(content, dict) or not isinstance(content.get("content_type"), str):
        raise ImportRefused(f"{here}: the message has no content with a content_type.")
    metadata: dict[str, Any] = message["metadata"] if isinstance(message.get("metadata"), dict) else {}
    text, reasoning = chatgpt_content_text(content)
    when = _epoch(message.get("create_time"), here)
    if role == "system" or metadata.get("is_visually_hidden_from_conversation"):
        return None  # instructions and context ChatGPT did not show either
    if not text.strip() and not reasoning.strip():
        return None  # an empty step (ChatGPT writes some around tools); its children move up to its parent
    model = str(metadata.get("model_slug") or "")[:MODEL_NAME_MAX]
    if role == "user":
        return Message.Role.USER, text, "", "", when
    if role != "assistant":
        name = author.get("name") if isinstance(author, dict) else None
        label = f"{role}: {name}" if name else role
        text = f"*{label}*\n\n{text}" if text.strip() else text
    return Message.Role.ASSISTANT, text, reasoning, model, when


def _chatgpt(entry: dict[str, Any], where: str) -> ParsedConversation:
    mapping = entry.get("mapping")
    if not isinstance(mapping, dict):
        raise ImportRefused(f"{where}: 'mapping' is not an object of nodes.")
    title = entry.get("title")
    if title is not None and not isinstance(title, str):
        raise ImportRefused(f"{where}: 'title' is not text.")
    parents: dict[str, str | None] = {}
    kept: dict[str, ParsedMessage] = {}
    for node_id, node in mapping.items():
        if not isinstance(node, dict):
            raise ImportRefused(f"{where}, node {node_id!r}: not an object.")
        parent = node.get("parent")
        if parent is not None and (not isinstance(parent, str) or parent not in mapping):
            raise ImportRefused(f"{where}, node {node_id!r}: its parent {parent!r} is not in the mapping.")
        parents[node_id] = parent
        found = _chatgpt_message(node_id, node.get("message"), where)
        if found is not None:
            role, text, reasoning, model, when = found
            kept[node_id] = ParsedMessage(
                key=node_id, parent=parent, role=role, content=text, reasoning=reasoning, model_name=model,
                created_at=when,
            )

    def nearest_kept(node_id: str | None) -> str | None:
        seen: set[str] = set()
        while node_id is not None and node_id not in kept:
            if node_id in seen:
                raise ImportRefused(f"{where}: its nodes' parents form a loop.")
            seen.add(node_id)
            node_id = parents.get(node_id)
        return node_id

    for message in kept.values():  # hidden and empty nodes drop out: their children hang from what is above
        message.parent = nearest_kept(message.parent)
    current = entry.get("current_node")
    if current is not None and current not in mapping:
        raise ImportRefused(f"{where}: current_node {current!r} is not in the mapping.")
    created = _epoch(entry.get("create_time"), where)
    for message in kept.values():
        message.created_at = message.created_at or created
    source_id = entry.get("conversation_id") or entry.get("id")
    if not isinstance(source_id, str) or not source_id:
        source_id = _digest(entry)
    return ParsedConversation(
        import_key=f"chatgpt:{source_id}"[:200],
        title=" ".join((title or "").split())[:TITLE_MAX],
        created_at=created,
        updated_at=_epoch(entry.get("update_time"), where),
        messages=_ordered(kept, where),
        active=nearest_kept(current) if current is not None else None,
    )


# --- chatweb's own export -------------------------------------------------------------------------------------
def _chatweb(entry: dict[str, Any], where: str) -> ParsedConversation:
    rows = entry.get("messages")
    if not isinstance(rows, list):
        raise ImportRefused(f"{where}: 'messages' is not a list.")
    params = entry.get("params") or {}
    try:
        params = validate_params(params) if isinstance(params, dict) else None
    except ParamError as exc:
        raise ImportRefused(f"{where}: params: {exc}") from None
    if params is None:
        raise ImportRefused(f"{where}: 'params' is not an object.")
    messages: dict[str, ParsedMessage] = {}
    for index, row in enumerate(rows, start=1):
        here = f"{where}, message {index}"
        if not isinstance(row, dict) or not isinstance(row.get("id"), int | str):
            raise ImportRefused(f"{here}: not an object with an id.")
        role = row.get("role")
        if role not in Message.Role.values:
            raise ImportRefused(f"{here}: unknown role {role!r}.")
        if not isinstance(row.get("content", ""), str):
            raise ImportRefused(f"{here}: 'content' is not text.")
        status = row.get("status") or Message.Status.COMPLETE
        if status not in Message.Status.values:
            raise ImportRefused(f"{here}: unknown status {status!r}.")
        parent = row.get("parent_id")
        key = str(row["id"])
        if key in messages:
            raise ImportRefused(f"{here}: the id {key!r} appears twice.")
        messages[key] = ParsedMessage(
            key=key,
            parent=None if parent is None else str(parent),
            role=role,
            content=row.get("content", ""),
            reasoning=str(row.get("reasoning") or ""),
            # a reply that was being written when the file was made will never end here
            status=Message.Status.INTERRUPTED if status in BUSY else status,
            finish_reason=str(row.get("finish_reason") or "")[:32],
            model_name=str(row.get("model_name") or "")[:MODEL_NAME_MAX],
            created_at=_iso(row.get("created_at"), here),
        )
    active = entry.get("active_leaf_id")
    if active is not None and str(active) not in messages:
        raise ImportRefused(f"{where}: active_leaf_id {active!r} is not one of its messages.")
    title = entry.get("title") or ""
    if not isinstance(title, str):
        raise ImportRefused(f"{where}: 'title' is not text.")
    return ParsedConversation(
        import_key=f"chatweb:{_digest(entry)}",
        title=" ".join(title.split())[:TITLE_MAX],
        created_at=_iso(entry.get("created_at"), where),
        updated_at=_iso(entry.get("updated_at"), where),
        messages=_ordered(messages, where),
        active=None if active is None else str(active),
        model_name=str(entry.get("model") or ""),
        system_prompt=str(entry.get("system_prompt") or ""),
        params=params,
    )


# --- writing --------------------------------------------------------------------------------------------------
def _newest_leaf(parsed: ParsedConversation, below: str | None) -> str | None:
    if not parsed.messages:
        return None
    if below is None:
        return max(parsed.messages, key=lambda m: (m.created_at or dt.datetime.min.replace(tzinfo=dt.UTC))).key
    children: dict[str, list[str]] = {}
    for m in parsed.messages:
        if m.parent is not None:
            children.setdefault(m.parent, []).append(m.key)
    while children.get(below):
        below = children[below][-1]
    return below


def _write(user: User, parsed: ParsedConversation) -> int:
    now = timezone.now()
    model: Model | None = model_for_user(user, parsed.model_name) if parsed.model_name else None
    conversation = Conversation.objects.create(
        owner=user,
        title=parsed.title,
        model=model,
        system_prompt=parsed.system_prompt,
        params=parsed.params,
        import_key=parsed.import_key,
    )
    created: dict[str, Message] = {}
    below: dict[str, list[ParsedMessage]] = {}
    for m in parsed.messages:
        if m.parent is not None:
            below.setdefault(m.parent, []).append(m)
    # Level by level: a message's parent row exists (with its id) before the message is written.
    level = [m for m in parsed.messages if m.parent is None]
    while level:
        rows = [
            Message(
                conversation=conversation,
                parent=created[m.parent] if m.parent is not None else None,
                role=m.role,
                content=m.content,
                reasoning=m.reasoning,
                status=m.status,
                finish_reason=m.finish_reason,
                model_name=m.model_name,
            )
            for m in level
        ]
        for m, row in zip(level, Message.objects.bulk_create(rows), strict=True):
            row.created_at = row.updated_at = m.created_at or parsed.created_at or now
            created[m.key] = row
        level = [child for m in level for child in below.get(m.key, [])]
    # Timestamps as they were (auto_now_add would otherwise stamp them with today).
    Message.objects.bulk_update(list(created.values()), ["created_at", "updated_at"], batch_size=500)
    # ChatGPT's current_node (or chatweb's active leaf) is the branch shown; without one, the newest line.
    leaf = parsed.active if parsed.active is not None else _newest_leaf(parsed, None)
    Conversation.objects.filter(pk=conversation.pk).update(
        active_leaf=created.get(leaf) if leaf is not None else None,
        created_at=parsed.created_at or now,
        updated_at=parsed.updated_at or parsed.created_at or now,
    )
    return len(created)


def import_conversations(*, user: User, raw: bytes | str) -> ImportResult:
    """Import every conversation of an export file for the user, all or nothing (ImportRefused when the file
    is malformed); conversations this user imported before are skipped."""
    parsed = parse_export(raw)
    done = skipped = messages = 0
    with transaction.atomic():
        already = set(
            Conversation.objects.for_user(user)
            .filter(import_key__in=[p.import_key for p in parsed])
            .values_list("import_key", flat=True)
        )
        for conversation in parsed:
            if conversation.import_key in already:
                skipped += 1
                continue
            already.add(conversation.import_key)  # the same conversation twice in one file is imported once
            messages += _write(user, conversation)
            done += 1
    return ImportResult(conversations=done, messages=messages, skipped=skipped)

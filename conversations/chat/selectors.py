"""Reads shared by views, consumers and services: a user's conversation, the sidebar (grouped) and its search, a
conversation's branch, a provider's target, the message tree."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery

from conversations.errors import NotFound
from conversations.models import Conversation, Folder, Message, User
from conversations.usage.days import local_day, local_today, zone_named

SIDEBAR_SIZE = 100  # the most recent conversations in no folder
KEPT_SIZE = 500  # pinned or in a folder: kept there on purpose, so listed whatever their age
LISTED_FIELDS = ("pk", "title", "updated_at", "folder", "pinned_at")
SEARCH_SIZE = 50
SNIPPET_CHARS = 140


def conversation_for(user: User, conversation_id: int) -> Conversation:
    """The user's conversation of that id, or NotFound (another user's conversation is not found either)."""
    found = Conversation.objects.for_user(user).select_related("model").filter(pk=conversation_id).first()
    if found is None:
        raise NotFound("No such conversation.")
    return found


def listed_conversations(user: User) -> QuerySet[Conversation]:
    """The user's conversations as the sidebar and its search list them (the fields they show), newest first;
    temporary chats are listed nowhere."""
    return (
        Conversation.objects.for_user(user).filter(temporary=False)
        .only(*LISTED_FIELDS).order_by("-updated_at", "-pk")
    )


def sidebar_conversations(user: User, query: str = "") -> QuerySet[Conversation]:
    """The user's conversations, newest first; with a query, those whose title, folder's name or any message
    matches it, each with `snippet_source`: the text of a matching message (one query either way)."""
    qs = listed_conversations(user).annotate(folder_name=F("folder__name"))
    query = query.strip()
    if not query:
        return qs[:SIDEBAR_SIZE]
    matching = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=query)
    return qs.annotate(
        snippet_source=Subquery(matching.order_by("created_at").values("content")[:1]),
    ).filter(Q(title__icontains=query) | Q(folder__name__icontains=query) | Exists(matching))[:SEARCH_SIZE]


def snippet(text: str | None, query: str) -> str:
    """A short piece of `text` around the first match of `query`, for search results."""
    if not text:
        return ""
    at = text.lower().find(query.lower())
    if at < 0:
        return ""
    start = max(0, at - SNIPPET_CHARS // 3)
    piece = " ".join(text[start : start + SNIPPET_CHARS].split())
    return ("…" if start else "") + piece + ("…" if start + SNIPPET_CHARS < len(text) else "")


def search_results(user: User, query: str) -> list[Conversation]:
    results = list(sidebar_conversations(user, query))
    for conversation in results:
        conversation.snippet = snippet(  # type: ignore[attr-defined]  # an attribute for the template only
            getattr(conversation, "snippet_source", None), query.strip())
    return results




# --- the sidebar: pinned on top, then the folders, then the rest by last activity in the user's time zone ------
@dataclass(frozen=True)
class SidebarFolder:
    folder: Folder
    conversations: list[Conversation]


@dataclass(frozen=True)
class SidebarGroup:
    key: str  # "today", "week", "older"
    label: str
    conversations: list[Conversation]


@dataclass(frozen=True)
class Sidebar:
    pinned: list[Conversation]
    folders: list[SidebarFolder]
    recent: list[SidebarGroup]  # the conversations in no folder and not pinned; empty groups left out

    @property
    def empty(self) -> bool:
        return not (self.pinned or self.folders or self.recent)


RECENT_GROUPS = (("today", "Today"), ("week", "Previous 7 days"), ("older", "Older"))


def recent_group(updated_at: datetime, today: date, zone: ZoneInfo) -> str:
    """Which of RECENT_GROUPS a conversation last active at `updated_at` falls in, `today` being the user's date."""
    day = local_day(updated_at, zone)
    if day >= today:
        return "today"
    return "week" if day >= today - timedelta(days=7) else "older"


def sidebar(user: User, *, now: datetime | None = None) -> Sidebar:
    """The user's sidebar in three queries however many conversations and folders: the folders, the conversations
    kept somewhere (pinned or in a folder, up to KEPT_SIZE), and the SIDEBAR_SIZE most recent others. A pinned
    conversation shows among the pinned only (with its folder's name), newest pin first; each folder's, newest
    activity first."""
    zone = zone_named(user.timezone)
    today = local_today(zone, now)
    folders = list(Folder.objects.for_user(user).only("pk", "name"))
    listed = listed_conversations(user)
    kept_here = Q(pinned_at__isnull=False) | Q(folder__isnull=False)
    kept: list[Conversation] = list(listed.filter(kept_here).annotate(folder_name=F("folder__name"))[:KEPT_SIZE])
    loose = list(listed.filter(pinned_at__isnull=True, folder__isnull=True)[:SIDEBAR_SIZE])

    pinned = sorted((c for c in kept if c.pinned_at), key=lambda c: (c.pinned_at, c.pk), reverse=True)
    by_folder: dict[int, list[Conversation]] = defaultdict(list)
    for conversation in kept:
        if not conversation.pinned_at and conversation.folder_id is not None:
            by_folder[conversation.folder_id].append(conversation)
    by_group: dict[str, list[Conversation]] = defaultdict(list)
    for conversation in loose:
        by_group[recent_group(conversation.updated_at, today, zone)].append(conversation)
    return Sidebar(
        pinned=pinned,
        folders=[SidebarFolder(folder, by_folder.get(folder.pk, [])) for folder in folders],
        recent=[SidebarGroup(key, label, by_group[key]) for key, label in RECENT_GROUPS if by_group.get(key)],
    )


def _carries_attachments() -> Exists:
    """Whether a message carries attachments, in the query that reads it."""
    return Exists(Message.attachments.through.objects.filter(message_id=OuterRef("pk")))


def conversation_branch(conversation: Conversation, leaf_id: int | None = None) -> list[Message]:
    """The messages from the root to `leaf_id` (default: the conversation's active leaf), in one query."""
    # The history sent upstream needs no cached HTML: defer it (it can be larger than the text). Whether a message
    # carries attachments comes in the same query, so a conversation without any costs no query more.
    messages = {
        m.pk: m
        for m in Message.objects.filter(conversation=conversation).defer("content_html").annotate(
            has_attachments=_carries_attachments()
        )
    }
    leaf_id = leaf_id or conversation.active_leaf_id
    if leaf_id is None and messages:
        leaf_id = max(messages.values(), key=lambda m: (m.created_at, m.pk)).pk
    return _walk_up(messages, leaf_id)


class BranchLine(NamedTuple):
    """One message of a branch as the prompt needs it, without a model instance."""

    pk: int
    parent_id: int | None
    role: str
    content: str
    has_attachments: bool = False


def branch_lines(conversation: Conversation, leaf_id: int | None = None) -> list[BranchLine]:
    """`conversation_branch` as plain tuples (pk, parent, role, content), in one query: what counting the prompt
    needs (`chat.estimate`, on every pause in typing), without building a Message per row (for 100 messages the
    model instances were most of the estimate's time)."""
    rows = (
        Message.objects.filter(conversation=conversation)
        .annotate(has_attachments=_carries_attachments())
        .values_list("pk", "parent_id", "role", "content", "has_attachments", "created_at")
    )
    lines: dict[int, BranchLine] = {}
    newest: tuple = ()
    for pk, parent_id, role, content, has_attachments, created_at in rows:
        lines[pk] = BranchLine(pk, parent_id, role, content, has_attachments)
        newest = max(newest, (created_at, pk)) if newest else (created_at, pk)
    leaf_id = leaf_id or conversation.active_leaf_id or (newest[1] if newest else None)
    return _walk_up(lines, leaf_id)


_Node = TypeVar("_Node", Message, BranchLine)


def _walk_up(nodes: dict[int, _Node], leaf_id: int | None) -> list[_Node]:
    """From `leaf_id` up to the root through parent ids, returned root first (a cycle or a gap ends it)."""
    branch: list[_Node] = []
    seen: set[int] = set()
    while leaf_id is not None and leaf_id in nodes and leaf_id not in seen:
        seen.add(leaf_id)
        node = nodes[leaf_id]
        branch.append(node)
        leaf_id = node.parent_id
    branch.reverse()
    return branch




# --- the message tree, for the chat page: versions of a message, switching branches, deleting a subtree
@dataclass(frozen=True, slots=True)
class TreeNode:
    pk: int
    parent_id: int | None
    role: str
    status: str


@dataclass
class MessageTree:
    """Every message of a conversation as ids only (one light query): who is whose child, oldest first."""

    nodes: dict[int, TreeNode]
    children: dict[int | None, list[int]]  # None: the roots

    def siblings(self, pk: int) -> list[int]:
        """The versions of a message: its parent's children (itself included), oldest first."""
        return self.children.get(self.nodes[pk].parent_id, [])

    def newest_leaf(self, pk: int) -> int:
        """The end of the newest line below a message (the branch shown when one switches to it)."""
        seen = {pk}
        while self.children.get(pk):
            pk = self.children[pk][-1]
            if pk in seen:
                break
            seen.add(pk)
        return pk

    def branch_ids(self, leaf_id: int | None) -> list[int]:
        """Ids from the root to `leaf_id` (None: the newest message, as conversation_branch does)."""
        if leaf_id is None or leaf_id not in self.nodes:
            leaf_id = max(self.nodes) if self.nodes else None
        ids: list[int] = []
        while leaf_id is not None and leaf_id in self.nodes and leaf_id not in ids:
            ids.append(leaf_id)
            leaf_id = self.nodes[leaf_id].parent_id
        ids.reverse()
        return ids

    def subtree_ids(self, pk: int) -> list[int]:
        """A message and everything below it."""
        found, todo = [], [pk]
        while todo:
            current = todo.pop()
            if current in found:
                continue
            found.append(current)
            todo.extend(self.children.get(current, []))
        return found


def message_tree(conversation_id: int) -> MessageTree:
    nodes: dict[int, TreeNode] = {}
    children: dict[int | None, list[int]] = defaultdict(list)
    rows = Message.objects.filter(conversation_id=conversation_id).order_by("created_at", "pk")
    for pk, parent_id, role, status in rows.values_list("pk", "parent_id", "role", "status"):
        nodes[pk] = TreeNode(pk, parent_id, role, status)
        children[parent_id].append(pk)
    return MessageTree(nodes, dict(children))


def branch_messages(
    conversation: Conversation, tree: MessageTree, leaf_id: int | None = None
) -> list[Message]:
    """The messages of the branch ending at `leaf_id` (default: the active leaf), each with `sibling_ids`
    (its versions), in one query beside the tree's."""
    ids = tree.branch_ids(leaf_id or conversation.active_leaf_id)
    found = Message.objects.filter(conversation=conversation, pk__in=ids).in_bulk()
    branch = [found[pk] for pk in ids if pk in found]
    for message in branch:
        message.sibling_ids = tree.siblings(message.pk)
    return branch

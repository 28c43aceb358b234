"""Groups as teams: create or update a group, its shared monthly budget, members and managers; follow a
sign-in's groups claim."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.contrib.auth.models import Group
from django.db import transaction

from conversations.audit import CHANGED, CREATED, audit_diff, audit_record, audit_snapshot
from conversations.models import Team, User

MEMBERS = "members"  # how the audit trail names a group's membership, which lives on the users' side


class TeamError(ValueError):
    """A team change that cannot be made (an unknown user, a negative budget); the message says which."""


def _users(names: Iterable[str]) -> list[User]:
    wanted = list(dict.fromkeys(names))
    found = {u.username: u for u in User.objects.filter(username__in=wanted)}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise TeamError(f"no user named {', '.join(repr(n) for n in missing)}")
    return [found[n] for n in wanted]


def team_update(
    *,
    name: str,
    monthly: Decimal | None = None,
    clear: bool = False,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    managers: Iterable[str] = (),
    actor: User | None = None,
    source: str = "",
) -> Team:
    """Create or update the group `name`: its shared monthly budget (`monthly`, or none with `clear`), add and
    remove members, add managers (who become members too); all or nothing, each change in the audit trail."""
    if monthly is not None and monthly < 0:
        raise TeamError("a budget cannot be negative")
    if monthly is not None and clear:
        raise TeamError("give a monthly budget or clear it, not both")
    name = name.strip()
    if not name:
        raise TeamError("a group needs a name")
    with transaction.atomic():
        group, group_created = Group.objects.get_or_create(name=name)
        team = Team.objects.select_for_update().filter(group=group).first()
        created = team is None
        if team is None:
            team = Team.objects.create(group=group)
        before = audit_snapshot(team, many_to_many=True)
        if monthly is not None or clear:
            team.monthly_budget = None if clear else monthly
            team.save(update_fields=["monthly_budget"])
        added, removed, leading = _users(add), _users(remove), _users(managers)
        group.user_set.add(*added, *leading)
        group.user_set.remove(*removed)
        team.managers.remove(*removed)
        team.managers.add(*leading)
        changed = audit_diff(before, audit_snapshot(team, many_to_many=True))
        if added or removed or leading:
            changed.append(MEMBERS)
        if created or group_created:
            audit_record(actor=actor, action=CREATED, obj=team, fields=changed, source=source)
        elif changed:
            audit_record(actor=actor, action=CHANGED, obj=team, fields=changed, source=source)
    return team


def team_members(team: Team) -> list[str]:
    """The usernames of the group's members, in order."""
    return list(team.group.user_set.order_by("username").values_list("username", flat=True))


def team_managers(team: Team) -> list[str]:
    """The usernames of the group's managers, in order."""
    return list(team.managers.order_by("username").values_list("username", flat=True))


def user_groups_sync(*, user: User, names: Iterable[str], source: str = "sign-in") -> list[str]:
    """Make the user's group memberships exactly `names` (creating groups not seen before); the names kept."""
    wanted = sorted({n.strip() for n in names if isinstance(n, str) and n.strip()})
    with transaction.atomic():
        groups = [Group.objects.get_or_create(name=n)[0] for n in wanted]
        before = set(user.groups.values_list("name", flat=True))
        user.groups.set(groups)
        if before != set(wanted):
            audit_record(actor=None, action=CHANGED, obj=user, fields=["groups"], source=source)
    return wanted

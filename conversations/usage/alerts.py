"""Budget alerts: one email (and a chat-page notice) when a month's spend crosses 80 % and then 100 % of a budget,
the user's own or a group's shared one."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mass_mail
from django.db import IntegrityError, transaction
from django.db.models import Q

from conversations.models import BudgetAlert, Team, User
from conversations.usage.budgets import month_spend, team_month_spend
from conversations.usage.days import local_today, month_first, zone_named
from conversations.usage.rollup import money_text

THRESHOLDS = (80, 100)  # per cent of the monthly budget
log = logging.getLogger(__name__)


def budget_alerts_check(*, user_id: int) -> list[BudgetAlert]:
    """Record (and email, once the transaction commits) each threshold the month's spend has crossed and that
    was not alerted yet this month, of the user's own budget and of each budgeted group of theirs; call inside
    the transaction that wrote the ledger row.

    Once per threshold and month even under concurrent sends: BudgetAlert's unique (user, month, threshold) for
    a user's budget, and (team, month, threshold) for a group's, let exactly one writer insert it; the others'
    inserts fail inside their own savepoint and send nothing. A group's alert goes to its members and managers.
    """
    user = User.objects.filter(pk=user_id).only("monthly_budget", "timezone", "email", "username").first()
    if user is None:
        return []
    alerts = _user_alerts(user)
    teams = Team.objects.select_related("group").filter(group__user=user_id, monthly_budget__gt=0)
    for team in teams.order_by("pk"):
        alerts.extend(_team_alerts(team, user_id))
    return alerts


def _user_alerts(user: User) -> list[BudgetAlert]:
    if not user.monthly_budget or user.monthly_budget <= 0:
        return []
    month = month_first(local_today(zone_named(user.timezone)))
    done = set(
        BudgetAlert.objects.filter(user_id=user.pk, team__isnull=True, month=month).values_list("threshold", flat=True)
    )
    if done.issuperset(THRESHOLDS):
        return []
    spent = month_spend(user)
    alerts = _record(done, spent, user.monthly_budget, user_id=user.pk, team=None, month=month)
    for alert in alerts:
        transaction.on_commit(lambda a=alert, u=user: _email([u], a))  # type: ignore[misc]
    return alerts


def _team_alerts(team: Team, user_id: int) -> list[BudgetAlert]:
    assert team.monthly_budget is not None
    month = month_first(local_today(zone_named(settings.TIME_ZONE)))  # a group's month is the server's
    done = set(BudgetAlert.objects.filter(team=team, month=month).values_list("threshold", flat=True))
    if done.issuperset(THRESHOLDS):
        return []
    spent = team_month_spend(team)
    alerts = _record(done, spent, team.monthly_budget, user_id=user_id, team=team, month=month)
    for alert in alerts:
        transaction.on_commit(lambda a=alert, t=team: _email(team_alert_recipients(t), a))  # type: ignore[misc]
    return alerts


def _record(
    done: set[int], spent: Decimal, budget: Decimal, *, user_id: int, team: Team | None, month: date
) -> list[BudgetAlert]:
    alerts = []
    for threshold in THRESHOLDS:
        if threshold in done or spent * 100 < budget * threshold:
            continue
        try:
            with transaction.atomic():
                alert = BudgetAlert.objects.create(
                    user_id=user_id, team=team, month=month, threshold=threshold, budget=budget, spent=spent
                )
        except IntegrityError:
            continue  # another request crossed it at the same moment and alerts for it
        alerts.append(alert)
    return alerts


def team_alert_recipients(team: Team) -> list[User]:
    """Who is told that a group's shared budget runs out: every member (their messages are the ones that will be
    refused) and every manager (who can raise it), once each."""
    return list(
        User.objects.filter(Q(groups=team.group_id) | Q(managed_teams=team), is_active=True)
        .distinct().only("pk", "email", "username").order_by("pk")
    )


def _email(users: list[User], alert: BudgetAlert) -> None:
    """One message per recipient (a group's members never see each other's addresses)."""
    subject, body = budget_alert_text(alert)
    messages = [(subject, body, None, [u.email]) for u in users if u.email]
    if not messages:
        return
    try:
        send_mass_mail(messages, fail_silently=False)
    except Exception:  # a mail server down must not fail a reply that is already recorded
        log.exception("budget alert email (alert %s) failed", alert.pk)


def budget_alert_text(alert: BudgetAlert) -> tuple[str, str]:
    """The subject and body of an alert's email (and the chat page's notice is its subject)."""
    month = alert.month.strftime("%B %Y")
    budget = _usd(alert.budget)
    if alert.team_id is not None:
        name = alert.team.group.name if alert.team else ""
        whose, refused = f"group {name}'s", "New messages of the group's members are refused"
    else:
        whose, refused = "your", "New messages are refused"
    if alert.threshold >= 100:
        subject = f"chatweb: {whose} monthly budget of {budget} USD is used up ({month})"
    else:
        subject = f"chatweb: {alert.threshold}% of {whose} monthly budget of {budget} USD used ({month})"
    body = (
        f"Spent so far in {month}: {_usd(alert.spent)} USD of {whose} {budget} USD budget.\n"
        + (f"{refused} until the month ends or the budget is raised.\n" if alert.threshold >= 100 else "")
        + "Details: /usage/\n"
    )
    return subject, body


def budget_alerts_current(*, user: User, today: date | None = None) -> list[BudgetAlert]:
    """This month's alerts the user is told of, the highest threshold of each budget only: their own budget's
    and those of the groups they belong to or manage (a group's month is the server's)."""
    if not getattr(user, "is_authenticated", False):
        return []
    month = month_first(today or local_today(zone_named(user.timezone)))
    team_month = month_first(today or local_today(zone_named(settings.TIME_ZONE)))
    mine = Q(user_id=user.pk, team__isnull=True, month=month)
    groups = Q(month=team_month) & (Q(team__group__user=user.pk) | Q(team__managers=user.pk))
    alerts = BudgetAlert.objects.filter(mine | groups).select_related("team__group").distinct()
    best: dict[int | None, BudgetAlert] = {}
    for alert in alerts.order_by("-threshold", "pk"):
        best.setdefault(alert.team_id, alert)
    return sorted(best.values(), key=lambda a: (a.team_id is not None, -a.threshold))


def budget_alert_notices(*, user: User) -> list[str]:
    """The chat page's notices: one line per budget that crossed a threshold this month."""
    return [budget_alert_text(a)[0].removeprefix("chatweb: ") for a in budget_alerts_current(user=user)]


def _usd(value: Decimal) -> str:
    return money_text(Decimal(value))

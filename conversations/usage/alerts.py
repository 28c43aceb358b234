"""Budget alerts: one email (and a chat-page notice) when a month's spend crosses 80 % and then 100 % of the budget."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

from django.core.mail import send_mail
from django.db import IntegrityError, transaction

from conversations.models import BudgetAlert, User
from conversations.usage.budgets import month_spend
from conversations.usage.days import local_today, month_first, zone_named
from conversations.usage.rollup import money_text

THRESHOLDS = (80, 100)  # per cent of the monthly budget
log = logging.getLogger(__name__)


def budget_alerts_check(*, user_id: int) -> list[BudgetAlert]:
    """Record (and email, once the transaction commits) each threshold the month's spend has crossed and
    that was not alerted yet this month; call inside the transaction that wrote the ledger row.

    Once per threshold and month even under concurrent sends: BudgetAlert's unique (user, month, threshold)
    lets exactly one writer insert it; the others' inserts fail inside their own savepoint and send nothing.
    """
    user = User.objects.filter(pk=user_id).only("monthly_budget", "timezone", "email", "username").first()
    if user is None or not user.monthly_budget or user.monthly_budget <= 0:
        return []
    month = month_first(local_today(zone_named(user.timezone)))
    done = set(BudgetAlert.objects.filter(user_id=user_id, month=month).values_list("threshold", flat=True))
    if done.issuperset(THRESHOLDS):
        return []
    spent = month_spend(user)
    budget = user.monthly_budget
    alerts = []
    for threshold in THRESHOLDS:
        if threshold in done or spent * 100 < budget * threshold:
            continue
        try:
            with transaction.atomic():
                alert = BudgetAlert.objects.create(
                    user_id=user_id, month=month, threshold=threshold, budget=budget, spent=spent
                )
        except IntegrityError:
            continue  # another request of this user crossed it at the same moment and alerts for it
        alerts.append(alert)
        transaction.on_commit(lambda a=alert, u=user: _email(u, a))  # type: ignore[misc]
    return alerts


def _email(user: User, alert: BudgetAlert) -> None:
    if not user.email:
        return
    subject, body = budget_alert_text(alert)
    try:
        send_mail(subject, body, None, [user.email])
    except Exception:  # a mail server down must not fail a reply that is already recorded
        log.exception("budget alert email to user %s failed", user.pk)


def budget_alert_text(alert: BudgetAlert) -> tuple[str, str]:
    """The subject and body of an alert's email (and the chat page's notice is its subject)."""
    month = alert.month.strftime("%B %Y")
    if alert.threshold >= 100:
        subject = f"chatweb: your monthly budget of {_usd(alert.budget)} USD is used up ({month})"
    else:
        subject = f"chatweb: {alert.threshold}% of your monthly budget of {_usd(alert.budget)} USD used ({month})"
    body = (
        f"Spent so far in {month}: {_usd(alert.spent)} USD of your {_usd(alert.budget)} USD budget.\n"
        + ("New messages are refused until the month ends or the budget is raised.\n" if alert.threshold >= 100 else "")
        + "Details: /usage/\n"
    )
    return subject, body


def budget_alerts_current(*, user: User, today: date | None = None) -> list[BudgetAlert]:
    """This month's alerts of the user, the highest threshold first (the chat page's notice)."""
    if not getattr(user, "is_authenticated", False):
        return []
    month = month_first(today or local_today(zone_named(user.timezone)))
    return list(BudgetAlert.objects.filter(user_id=user.pk, month=month).order_by("-threshold"))


def _usd(value: Decimal) -> str:
    return money_text(Decimal(value))

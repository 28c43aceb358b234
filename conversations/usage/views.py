"""The usage pages: `/usage/` (dashboard), `/usage/export.csv` and `/usage/summary.json` (docs/usage.md).

Pages redirect an anonymous visitor to the login page; the two data endpoints answer 401 with a JSON error.
Errors in `from` / `to` / `user` are 400 (404 for an unknown user) with `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from conversations import db
from conversations.models import Team, UsageRecord, User
from conversations.usage.alerts import budget_alert_notices
from conversations.usage.budgets import budget_display, team_budget_status, user_team_budgets
from conversations.usage.charts import Bar, bar_chart, chart_table, money_axis, tokens_axis
from conversations.usage.days import UTC, local_today, month_first, previous_month, zone_named
from conversations.usage.forecast import Forecast, group_forecast, usage_forecast
from conversations.usage.reconcile import reconciliation_report
from conversations.usage.rollup import Totals, money_text
from conversations.usage.selectors import (
    Summary,
    UsageQueryError,
    UsageScope,
    conversation_spend,
    usage_by_conversation,
    usage_by_user,
    usage_group,
    usage_records,
    usage_scope,
    usage_subject,
    usage_summary,
)
from conversations.web import AuthenticatedHttpRequest

CSV_COLUMNS = [
    "created_at", "source", "conversation_id", "message_id", "provider", "model", "prompt_tokens",
    "completion_tokens", "total_tokens", "estimated_cost", "usage_estimated", "finish_reason", "ttft_ms",
    "duration_ms", "upstream_request_id", "cost_source", "reconciled_cost", "outcome",
]
_CSV_FIELDS = [
    "created_at", "source", "conversation_id", "message_id", "provider_name", "model_name", "prompt_tokens",
    "completion_tokens", "total_tokens", "estimated_cost", "usage_estimated", "finish_reason", "ttft_ms",
    "duration_ms", "upstream_request_id", "cost_source", "reconciled_cost", "outcome",
]
_PK = len(_CSV_FIELDS)  # where a batch row holds the record's id, after the exported fields
EXPORT_BATCH = 5000
PAGE_SIZE = 25
DAILY_CHART_MAX_DAYS = 366  # longer ranges are charted by month


def totals_json(totals: Totals) -> dict[str, Any]:
    return {
        "requests": totals.requests,
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "total_tokens": totals.total_tokens,
        "estimated_cost": money_text(totals.estimated_cost),
    }


def _zone_key(scope: UsageScope) -> str | None:
    """The zone whose days the scope counts: the user's, the server's for a group, none for everyone."""
    if scope.group is not None:
        return zone_named(settings.TIME_ZONE).key
    return None if scope.subject is None else zone_named(scope.subject.timezone).key


def _error(exc: UsageQueryError) -> JsonResponse:
    return JsonResponse({"error": {"code": exc.code, "message": exc.message}}, status=exc.status)


def data_login_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Like login_required, but a program asking for data gets 401 JSON rather than a login page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return JsonResponse(
                {"error": {"code": "not_authenticated", "message": "sign in to see usage"}}, status=401
            )
        return view(request, *args, **kwargs)

    return wrapper


def _scope(request: AuthenticatedHttpRequest) -> UsageScope:
    return usage_scope(
        viewer=request.user,
        wanted_user=request.GET.get("user"),
        wanted_group=request.GET.get("group") or None,
        first=request.GET.get("from"),
        last=request.GET.get("to"),
    )


# --- /usage/summary.json ---------------------------------------------------------------------------------

@require_GET
@data_login_required
def summary_json(request: AuthenticatedHttpRequest) -> HttpResponse:
    try:
        scope = _scope(request)
    except UsageQueryError as exc:
        return _error(exc)
    subject = scope.subject
    summary = usage_summary(scope)
    return JsonResponse({
        "from": scope.first.isoformat(),
        "to": scope.last.isoformat(),
        "user": "all" if subject is None else subject.get_username(),
        "group": scope.group,
        "time_zone": _zone_key(scope),
        "totals": totals_json(summary.totals),
        "by_day": [{"day": d.isoformat(), **totals_json(t)} for d, t in summary.by_day.items()],
        "by_model": [{"model": m, **totals_json(t)} for m, t in summary.by_model.items()],
        # The current month's forecast of the subject: one user, or a group against its shared budget.
        "forecast": None if (forecast := _forecast(scope)) is None else forecast.as_json(),
    })


# --- /usage/budget.json: the chat page's cost lines, fetched again after each reply -------------------------

@require_GET
@data_login_required
def budget_json(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The signed-in user's budget this month (exact amounts as strings and the words the pages show), each shared
    budget of their groups, this month's alert notices, and with `?conversation=ID` that conversation's running
    total (every branch and regeneration; another user's conversation counts nothing of theirs)."""
    payload: dict[str, Any] = _own_budget(request.user)
    payload["groups"] = [
        {"name": t.name, "label": t.text["label"], "title": t.text["title"], "over": t.text["over"]}
        for t in user_team_budgets(request.user)
    ]
    payload["alerts"] = budget_alert_notices(user=request.user)
    if "conversation" in request.GET:
        try:
            conversation_id = int(request.GET["conversation"])
        except ValueError:
            return _error(UsageQueryError("bad_conversation", "conversation must be a conversation id"))
        cost, requests = conversation_spend(user=request.user, conversation_id=conversation_id)
        payload["conversation"] = {"id": conversation_id, "cost": money_text(cost), "requests": requests}
    return JsonResponse(payload)


def _own_budget(user: User) -> dict[str, Any]:
    status = budget_display(user)
    if status is None:
        return {"budget": None}
    amounts = {"budget": money_text(status["budget"]), "spent": money_text(status["spent"]),
               "reserved": money_text(status["reserved"])}
    remaining = status["remaining"]
    return {
        **amounts,
        "remaining": ("-" + money_text(-remaining)) if remaining < 0 else money_text(remaining),
        "month": status["month"], "left": status["left"], "label": status["label"], "title": status["title"],
        "over": status["over"],
    }


# --- /usage/export.csv -----------------------------------------------------------------------------------

def _csv_row(row: tuple, everyone: bool) -> list[Any]:
    (created_at, source, conversation_id, message_id, provider, model, prompt, completion, total, cost,
     usage_estimated, finish_reason, ttft_ms, duration_ms, upstream_request_id, cost_source, reconciled, outcome,
     *rest) = row
    out = [
        created_at.astimezone(UTC).isoformat(), source, conversation_id or "", message_id or "", provider,
        model, prompt, completion, total, money_text(cost), "true" if usage_estimated else "false",
        finish_reason, "" if ttft_ms is None else ttft_ms, "" if duration_ms is None else duration_ms,
        upstream_request_id, cost_source, "" if reconciled is None else money_text(reconciled), outcome,
    ]
    return out + rest if everyone else out


def _encode(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


def _export_batch(records: QuerySet[UsageRecord], after: tuple | None, everyone: bool) -> list[tuple]:
    """The next EXPORT_BATCH rows in (created_at, id) order: keyset pages, so no cursor stays open."""
    if after is not None:
        records = records.filter(Q(created_at__gt=after[0]) | Q(created_at=after[0], pk__gt=after[1]))
    fields = [*_CSV_FIELDS, "pk"] + (["user__username"] if everyone else [])
    rows = list(records.order_by("created_at", "pk").values_list(*fields)[:EXPORT_BATCH])
    return rows


def _strip_pk(row: tuple) -> tuple:
    return row[:_PK] + row[_PK + 1 :]


def _export_sync(records: QuerySet[UsageRecord], everyone: bool, header: list[str]) -> Iterator[bytes]:
    yield _encode([header])
    after = None
    while rows := _export_batch(records, after, everyone):
        yield _encode([_csv_row(_strip_pk(r), everyone) for r in rows])
        after = (rows[-1][0], rows[-1][_PK])


async def _export_async(
    records: QuerySet[UsageRecord], everyone: bool, header: list[str]
) -> AsyncIterator[bytes]:
    yield _encode([header])
    after = None
    while rows := await db.pages.run(_export_batch, records, after, everyone):
        yield _encode([_csv_row(_strip_pk(r), everyone) for r in rows])
        after = (rows[-1][0], rows[-1][_PK])


@require_GET
@data_login_required
def export_csv(request: AuthenticatedHttpRequest) -> HttpResponseBase:
    """Every ledger row of the subject (or of `from`..`to`), oldest first, streamed in batches.

    The columns are those of docs/usage.md; an all-users export (staff) adds a `user` column at the end.
    """
    try:
        wanted_group = request.GET.get("group") or None
        group, members = usage_group(request.user, wanted_group) if wanted_group else (None, None)
        subject = usage_subject(request.user, request.GET.get("user")) if group is None else None
        dated = "from" in request.GET or "to" in request.GET
        scope = _scope(request) if dated else None
    except UsageQueryError as exc:
        return _error(exc)
    records = usage_records(
        subject=subject, first=scope.first if scope else None, last=scope.last if scope else None, members=members
    )
    everyone = subject is None
    header = CSV_COLUMNS + (["user"] if everyone else [])
    name = f"group-{group}" if group else "all" if subject is None else subject.get_username()
    span = f"-{scope.first}-{scope.last}" if scope else ""
    # Under ASGI (Daphne) an async iterator streams without buffering; under WSGI a plain one does.
    content = (_export_async if isinstance(request, ASGIRequest) else _export_sync)(records, everyone, header)
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="usage-{name}{span}.csv"'
    return response


# --- /usage/ ---------------------------------------------------------------------------------------------

def _query(scope: UsageScope, **extra: Any) -> str:
    params = {"from": scope.first.isoformat(), "to": scope.last.isoformat()}
    if scope.group is not None:
        params["group"] = scope.group
    elif scope.subject is None:
        params["user"] = "all"
    elif scope.subject.pk != scope.viewer.pk:
        params["user"] = scope.subject.get_username()
    params.update({k: v for k, v in extra.items() if v is not None})
    return urlencode(params)


def _series(summary: Summary, scope: UsageScope) -> list[tuple[str, Totals]]:
    """What the charts draw: every day of the range, or every month when the range is longer than a year."""
    days = summary.day_series(scope.first, scope.last)
    if len(days) <= DAILY_CHART_MAX_DAYS:
        return [(d.isoformat(), t) for d, t in days]
    months: dict[str, Totals] = {}
    for d, t in days:
        months.setdefault(d.strftime("%Y-%m"), Totals()).add(t)
    return list(months.items())


def _charts(series: list[tuple[str, Totals]], scope: UsageScope) -> dict[str, Any]:
    span = f"{scope.first} to {scope.last}"
    unit = "day" if len(series) and len(series[0][0]) == 10 else "month"
    see = f"the table 'Tokens and cost per {unit}' has the numbers"
    tokens = bar_chart(
        chart_id="chart-tokens",
        title=f"Tokens per {unit}",
        description=f"Total tokens per {unit}, {span}; {see}.",
        bars=[Bar(label, t.total_tokens, f"{t.total_tokens:,} tokens") for label, t in series],
        axis_text=tokens_axis,
    )
    cost = bar_chart(
        chart_id="chart-cost",
        title=f"Cost per {unit} (USD)",
        description=f"Estimated cost per {unit}, {span}; {see}.",
        bars=[Bar(label, float(t.estimated_cost), f"${money_text(t.estimated_cost)}") for label, t in series],
        axis_text=money_axis,
    )
    table = chart_table(
        table_id="series-table",
        caption=f"Tokens and cost per {unit}",
        columns=[unit.capitalize(), "Requests", "Tokens", "Cost (USD)"],
        rows=((label, t.requests, t.total_tokens, t.cost_text) for label, t in series),
    )
    return {"tokens_chart": tokens, "cost_chart": cost, "chart_table": table, "chart_unit": unit}


def _ranges(viewer: User, scope: UsageScope) -> list[tuple[str, str]]:
    today = local_today(zone_named(_zone_key(scope) or viewer.timezone))
    last_first, last_last = previous_month(today)
    spans = [
        ("This month", month_first(today), today),
        ("Last month", last_first, last_last),
        ("Last 30 days", date.fromordinal(today.toordinal() - 29), today),
        ("This year", today.replace(month=1, day=1), today),
    ]
    return [(label, "?" + _query(replace(scope, first=a, last=b, memo={}))) for label, a, b in spans]


def _page_number(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


def _with_cost_text(records: QuerySet[UsageRecord]) -> list[UsageRecord]:
    rows = list(records)
    for r in rows:
        r.cost_text = money_text(r.estimated_cost)  # type: ignore[attr-defined]  # for the template only
    return rows


def _budget(user: User) -> dict[str, Any] | None:
    status = budget_display(user)
    if status is None:
        return None
    used = status["spent"] + status["reserved"]
    return {
        **status,
        "meter_max": money_text(status["budget"]),
        "meter_value": money_text(min(max(used, Decimal(0)), status["budget"])),
        "meter_high": money_text(status["budget"] * Decimal("0.8")),
    }


def _forecast(scope: UsageScope) -> Forecast | None:
    """This month's forecast of what the page shows: a group (its shared budget), one user, or none for everyone."""
    if scope.group is not None:
        return group_forecast(name=scope.group)
    return usage_forecast(user=scope.subject) if scope.subject is not None else None


def _group_budget(name: str) -> dict[str, Any] | None:
    team = Team.objects.select_related("group").filter(group__name=name).first()
    status = team_budget_status(team) if team is not None else None
    if status is None:
        return None
    used = status.spent + status.reserved
    return {
        "budget": status.budget, "spent": status.spent, "reserved": status.reserved, "remaining": status.remaining,
        "month": status.month, "meter_max": money_text(status.budget),
        "meter_value": money_text(min(max(used, Decimal(0)), status.budget)),
        "meter_high": money_text(status.budget * Decimal("0.8")),
    }


def _dashboard_context(request: HttpRequest, scope: UsageScope) -> dict[str, Any]:
    subject = scope.subject
    summary = usage_summary(scope)
    pages = max(1, math.ceil(summary.totals.requests / PAGE_SIZE))
    page = min(_page_number(request), pages)
    # The roll-up's request count is the ledger's row count for the range (rolled_up checks it): no COUNT(*).
    records = usage_records(
        subject=scope.subject, first=scope.first, last=scope.last, members=scope.members if scope.group else None
    )
    records = records.order_by("-created_at", "-pk")
    if scope.everyone:
        records = records.select_related("user")
    staff = scope.viewer.is_staff
    context: dict[str, Any] = {
        "scope": scope,
        "subject_name": (
            f"group {scope.group}" if scope.group else "all users" if subject is None else subject.get_username()
        ),
        "zone": _zone_key(scope) or "UTC",
        "summary": summary,
        "totals": summary.totals,
        "series": _series(summary, scope),
        "by_model": list(summary.by_model.items()),
        "by_conversation": usage_by_conversation(scope),
        "records": _with_cost_text(records[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]),
        "page": page,
        "pages": pages,
        "prev_query": _query(scope, page=page - 1) if page > 1 else None,
        "next_query": _query(scope, page=page + 1) if page < pages else None,
        "query": _query(scope),
        "ranges": _ranges(scope.viewer, scope),
        "budget": _budget(scope.subject) if scope.subject is not None else None,
        "group": scope.group,
        "group_budget": _group_budget(scope.group) if scope.group else None,
        "by_member": usage_by_user(scope) if scope.group else None,
        "managed_groups": list(
            Team.objects.managed_by(scope.viewer).order_by("group__name").values_list("group__name", flat=True)
        ),
        "forecast": _forecast(scope),
        "staff": staff,
        "user_field": "all" if subject is None else (
            subject.get_username() if subject.pk != scope.viewer.pk else ""
        ),
    }
    context.update(_charts(context["series"], scope))
    if staff:
        context["by_provider"] = list(summary.by_provider.items())
        context["unpriced_models"] = list(summary.unpriced_models.items())
        context["by_user"] = usage_by_user(scope) if scope.everyone and not scope.group else None
    return context


@require_GET
@login_required
def dashboard(request: AuthenticatedHttpRequest) -> HttpResponse:
    status, error = 200, None
    try:
        scope = _scope(request)
    except UsageQueryError as exc:
        if exc.code == "unknown_group":
            raise Http404(exc.message) from None
        status, error = exc.status, exc.message
        scope = usage_scope(viewer=request.user, wanted_user=None, first=None, last=None)
    context = _dashboard_context(request, scope)
    context["error"] = error
    return render(request, "usage/dashboard.html", context, status=status)



# --- /usage/reconciliation/ (staff) ----------------------------------------------------------------------------

@require_GET
@login_required
def reconciliation(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The providers' own accounts against the ledger, per provider and month: staff only (others: 404)."""
    if not request.user.is_staff:
        raise Http404("no such page")
    return render(request, "usage/reconciliation.html", {"report": reconciliation_report()})

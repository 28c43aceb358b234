"""Share links over HTTP: the owner makes (`POST /c/<id>/share/`) and revokes (`POST /c/<id>/unshare/`) them from
the chat page; anyone holding one reads its snapshot at `GET /s/<token>/`, without signing in. The shared page
is built from the snapshot alone (conversations/chat/sharing.py) with the chat's safe Markdown, runs no script
and asks search engines not to index it. A link made with "Include attachments" serves its files at
`GET /s/<token>/files/<number>/` while it lives."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from conversations.chat.conversation_views import refusals
from conversations.chat.rendering import render_markdown
from conversations.chat.sharing import share_create, share_revoke, share_revoke_all, shared_file, shared_snapshot
from conversations.errors import NotFound
from conversations.models import Attachment
from conversations.web import AuthenticatedHttpRequest

# Stricter than the site's policy: the shared page needs our stylesheet and nothing else (no script at all,
# no connections, no forms), and nobody may frame it.
SHARED_PAGE_CSP = "; ".join(
    (
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SHARED_PAGE_HEADERS = {
    "Content-Security-Policy": SHARED_PAGE_CSP,
    "X-Robots-Tag": "noindex, nofollow",
    # The token is the page's only key: it must not travel in a Referer to the sites its links lead to.
    "Referrer-Policy": "no-referrer",
    # A revoked link must stop answering at once, from caches too.
    "Cache-Control": "no-store",
}


@login_required
@require_POST
@refusals
def share(request: AuthenticatedHttpRequest, conversation_id: int) -> HttpResponseBase:
    include = request.POST.get("include_attachments", "").lower() in ("1", "true", "on", "yes")
    link = share_create(user=request.user, conversation_id=conversation_id, include_attachments=include)
    return JsonResponse(
        {"url": link.url, "created_at": link.created_at.isoformat(), "id": link.pk,
         "include_attachments": link.include_attachments},
        status=201,
    )


@login_required
@require_POST
@refusals
def unshare(request: AuthenticatedHttpRequest, conversation_id: int) -> HttpResponseBase:
    revoked = share_revoke_all(user=request.user, conversation_id=conversation_id)
    return JsonResponse({"revoked": revoked})


@login_required
@require_POST
@refusals
def revoke_link(request: AuthenticatedHttpRequest, link_id: int) -> HttpResponseBase:
    """The settings page's Revoke button on one link (and the chat page's share bar, which asks for JSON)."""
    share_revoke(user=request.user, link_id=link_id)
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"revoked": link_id})
    messages.success(request, "Link revoked: it no longer opens the conversation.")
    return HttpResponseRedirect("/settings/#shared-links")


@require_GET
def shared_page(request: HttpRequest, token: str) -> HttpResponse:
    try:
        link = shared_snapshot(token)
    except NotFound as exc:
        raise Http404(exc.message) from None
    shown = [
        {
            "role": m.get("role"),
            "content": m.get("content", ""),
            "html": render_markdown(m.get("content", "")) if m.get("role") == "assistant" else None,
            "attachments": m.get("attachments", []) if link.include_attachments else [],
        }
        for m in link.messages
    ]
    response = render(request, "shared.html", {"link": link, "shared_messages": shown})
    for name, value in SHARED_PAGE_HEADERS.items():
        response[name] = value
    return response


@require_GET
def shared_attachment(request: HttpRequest, token: str, number: int) -> HttpResponseBase:
    """A file of a link made with its attachments, for anyone holding the link; 404 once it is revoked."""
    try:
        attachment = shared_file(token, number)
    except NotFound as exc:
        raise Http404(exc.message) from None
    response = FileResponse(
        attachment.file.open("rb"),
        content_type=attachment.content_type,
        as_attachment=attachment.kind == Attachment.Kind.DOCUMENT,
        filename=attachment.name,
    )
    response["X-Content-Type-Options"] = "nosniff"
    # Nothing in a stored file may run as a page of this site, whatever a browser makes of it.
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    for name in ("X-Robots-Tag", "Referrer-Policy", "Cache-Control"):
        response[name] = SHARED_PAGE_HEADERS[name]
    return response

"""The attachment endpoints: `POST /attachments/` (one file, a form field `file`, the session and CSRF token),
`GET /attachments/<id>/` (the file, to its owner only) and `GET /attachments/<id>/thumbnail/` (an image's preview,
to its owner only).
Reading and checking files: conversations/chat/attachments.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from django.contrib.auth.decorators import login_required
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from conversations.chat.attachments import attachment_create, attachment_payload
from conversations.errors import (
    AttachmentRefused,
    AttachmentTooLarge,
    AttachmentTypeUnsupported,
)
from conversations.models import Attachment, User


def _refusal(exc: AttachmentRefused) -> JsonResponse:
    status = 413 if isinstance(exc, AttachmentTooLarge) else 415 if isinstance(exc, AttachmentTypeUnsupported) else 400
    return JsonResponse({"error": {"code": exc.code, "message": exc.message}}, status=status)


def _login_json(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    # The page's script asks with fetch: a signed-out request gets a JSON 401, not the login page.
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"error": {"code": "unauthorized", "message": "Sign in first."}}, status=401)
        return view(request, *args, **kwargs)

    return wrapped


@_login_json
@require_POST
def upload(request: HttpRequest) -> HttpResponse:
    upload = request.FILES.get("file")
    if upload is None:
        return JsonResponse(
            {"error": {"code": "bad_request", "message": "Send one file in the form field `file`."}}, status=400
        )
    try:
        attachment = attachment_create(user=cast(User, request.user), upload=upload)
    except AttachmentRefused as exc:
        return _refusal(exc)
    return JsonResponse(attachment_payload(attachment), status=201)


def _owned(request: HttpRequest, attachment_id: str) -> Attachment:
    attachment = Attachment.objects.for_user(cast(User, request.user)).filter(public_id=attachment_id).first()
    if attachment is None:
        raise Http404("No such attachment.")
    return attachment


def _file_response(stored: FieldFile, content_type: str, *, as_attachment: bool, filename: str) -> FileResponse:
    response = FileResponse(stored.open("rb"), content_type=content_type, as_attachment=as_attachment,
                            filename=filename)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    # Nothing in a stored file may run as a page of this site, whatever a browser makes of it.
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    return response


@login_required
@require_GET
def download(request: HttpRequest, attachment_id: str) -> HttpResponseBase:
    attachment = _owned(request, attachment_id)
    return _file_response(attachment.file, attachment.content_type,
                          as_attachment=attachment.kind == Attachment.Kind.DOCUMENT, filename=attachment.name)


@login_required
@require_GET
def thumbnail(request: HttpRequest, attachment_id: str) -> HttpResponseBase:
    attachment = _owned(request, attachment_id)
    if attachment.kind != Attachment.Kind.IMAGE:
        raise Http404("Only images have thumbnails.")
    if not attachment.thumbnail:  # an image stored before thumbnails were made: the image itself
        return download(request, attachment_id)
    return _file_response(attachment.thumbnail, "image/webp", as_attachment=False,
                          filename=f"{attachment.name.rsplit('.', 1)[0]}-thumbnail.webp")

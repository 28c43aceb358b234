"""The settings page's import form posts here (`POST /settings/import/`): the file runs through the same service
as `manage.py importchats` (conversations/chat/importing.py) and the page comes back with what happened."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseBase, HttpResponseRedirect
from django.views.decorators.http import require_POST

from conversations.chat.importing import ImportRefused, import_conversations
from conversations.web import AuthenticatedHttpRequest

IMPORT_MAX_BYTES = 200 * 1024 * 1024  # a file is read whole before anything is written: a bound on memory
BACK = "/settings/#import"


@login_required
@require_POST
def import_upload(request: AuthenticatedHttpRequest) -> HttpResponseBase:
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, "Choose an export file to import.")
        return HttpResponseRedirect(BACK)
    if upload.size is not None and upload.size > IMPORT_MAX_BYTES:
        messages.error(request, f"Nothing imported: the file is larger than {IMPORT_MAX_BYTES // 2**20} MB.")
        return HttpResponseRedirect(BACK)
    try:
        result = import_conversations(user=request.user, raw=upload.read())
    except ImportRefused as exc:
        messages.error(request, f"Nothing imported: {exc.message}")
        return HttpResponseRedirect(BACK)
    skipped = f" ({result.skipped} imported before were skipped)" if result.skipped else ""
    messages.success(request, f"{result.summary().capitalize()}{skipped}.")
    return HttpResponseRedirect(BACK)

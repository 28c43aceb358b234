"""Attachments: files a user uploads to send with messages. `attachment_create` reads a file by its content (never
its name), refuses what it cannot read, re-encodes images (metadata such as GPS EXIF dropped, the long side scaled to
CHATWEB_ATTACHMENT_IMAGE_SIDE) and keeps a document's text; `attachment_parts` turns a message's attachments into
OpenAI content parts. The stored files go with their conversation or account (`attachment_file_delete`); uploads
never sent go after CHATWEB_ATTACHMENT_UNSENT_HOURS (`attachments_unsent_delete`)."""

from __future__ import annotations

import base64
import io
import json
import logging
import warnings
import zipfile
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from conversations.errors import (
    AttachmentTooLarge,
    AttachmentTypeUnsupported,
    AttachmentUnreadable,
    AttachmentUnsupported,
    NotFound,
)
from conversations.models import Attachment, Conversation, Message, Model, User

log = logging.getLogger(__name__)

MAX_PIXELS = 50_000_000  # an image's width × height before decoding: beyond it, a decompression bomb
MAX_UNPACKED_BYTES = 200 * 1024 * 1024  # what a DOCX may unpack to (a zip bomb stops here)
MAX_ZIP_ENTRIES = 5_000
MAX_PDF_PAGES = 2_000
MAX_TEXT_CHARS = 2_000_000  # a document's text kept at upload; what goes upstream is cut to the model's context
NO_TEXT_NOTE = "(This PDF has no text layer, so nothing of it could be read: it is probably a scanned document.)"
THUMBNAIL_SIDE = 256  # pixels, the long side of an image's preview in the composer and the conversation
IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
TEXT_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".csv": "text/csv", ".json": "application/json"}
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def _clean_name(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = "".join(c for c in name if c.isprintable())
    return (name or "file")[:255]


# --- reading files by their content ---------------------------------------------------------------------------------
def _image(data: bytes) -> tuple[bytes, str, int, int]:
    """(bytes, content type, width, height) of the re-encoded image; raises the refusals."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image: Image.Image = Image.open(io.BytesIO(data))
            if image.format not in IMAGE_FORMATS:
                raise AttachmentTypeUnsupported(
                    f"{image.format} images are not supported; send PNG, JPEG, WebP or GIF."
                )
            if image.width * image.height > MAX_PIXELS:
                raise AttachmentTooLarge(
                    f"The image is {image.width}×{image.height} pixels, more than chatweb decodes "
                    f"({MAX_PIXELS:,} pixels)."
                )
            source_format = image.format
            image.seek(0)  # a GIF's first frame
            image.load()
            image = ImageOps.exif_transpose(image)  # the orientation EXIF gave, before EXIF is dropped
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise AttachmentTooLarge("The image has more pixels than chatweb decodes.") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
            raise AttachmentUnreadable(f"The image cannot be read ({exc.__class__.__name__}).") from None
    side = settings.CHATWEB_ATTACHMENT_IMAGE_SIDE
    if max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if source_format == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=90, optimize=True)
        content_type = "image/jpeg"
    else:  # PNG keeps transparency and is lossless; a GIF's frame and a WebP become PNG
        if image.mode not in ("RGB", "RGBA", "L", "LA", "P", "1"):
            image = image.convert("RGBA")
        image.save(out, "PNG", optimize=True)
        content_type = "image/png"
    return out.getvalue(), content_type, image.width, image.height


def _thumbnail(stored: bytes) -> bytes:
    """A small WebP preview of a stored (already re-encoded) image: its long side THUMBNAIL_SIDE at most."""
    from PIL import Image

    with Image.open(io.BytesIO(stored)) as image:
        image.load()
        preview = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P", "PA") else "RGB")
    preview.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    preview.save(out, "WEBP", quality=80)
    return out.getvalue()


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise AttachmentUnreadable("The PDF is encrypted with a password; send it without one.")
        pages = []
        for number, page in enumerate(reader.pages):
            if number >= MAX_PDF_PAGES:
                break
            pages.append(page.extract_text() or "")
    except AttachmentUnreadable:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError, RecursionError) as exc:
        raise AttachmentUnreadable(f"The PDF cannot be read ({exc.__class__.__name__}).") from None
    return "\n\n".join(p.strip() for p in pages if p.strip())


def _docx_text(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
            if len(entries) > MAX_ZIP_ENTRIES or sum(e.file_size for e in entries) > MAX_UNPACKED_BYTES:
                raise AttachmentTooLarge("The document unpacks to more than chatweb reads.")
            if "word/document.xml" not in archive.namelist():
                raise AttachmentTypeUnsupported("Zip files are not supported; send a Word document (.docx).")
    except zipfile.BadZipFile:
        raise AttachmentUnreadable("The document cannot be read (a broken zip archive).") from None
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises many kinds on a broken package
        raise AttachmentUnreadable(f"The Word document cannot be read ({exc.__class__.__name__}).") from None
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            lines.append("\t".join(cell.text for cell in row.cells))
    return "\n".join(lines).strip()


def _plain_text(data: bytes) -> str | None:
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _claims_image(name: str, declared: str) -> bool:
    return declared.startswith("image/") or _suffix(name) in (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")


def _read(name: str, declared: str, data: bytes) -> dict[str, Any]:
    """The stored form of an upload: fields of an Attachment plus `data`, or a refusal."""
    head = data[:16]
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")) or (
        head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    ):
        stored, content_type, width, height = _image(data)
        return {"kind": Attachment.Kind.IMAGE, "content_type": content_type, "data": stored, "width": width,
                "height": height}
    if _claims_image(name, declared):
        raise AttachmentUnreadable("The file is not an image chatweb reads, whatever its name says "
                                   "(send PNG, JPEG, WebP or GIF).")
    if head.startswith(b"%PDF-") or _suffix(name) == ".pdf":
        if not head.startswith(b"%PDF-"):
            raise AttachmentUnreadable("The file is not a PDF, whatever its name says.")
        text = _pdf_text(data)
        return {"kind": Attachment.Kind.DOCUMENT, "content_type": "application/pdf", "data": data, "text": text}
    if head.startswith(b"PK\x03\x04"):
        text = _docx_text(data)
        return {"kind": Attachment.Kind.DOCUMENT, "content_type": DOCX_TYPE, "data": data, "text": text}
    plain = _plain_text(data)
    if plain is None:
        raise AttachmentTypeUnsupported(
            "This type of file is not supported: send an image (PNG, JPEG, WebP, GIF), a PDF, a Word document, "
            "or text (plain, Markdown, CSV, JSON, source code)."
        )
    content_type = TEXT_TYPES.get(_suffix(name), "text/plain")
    if content_type == "application/json":
        try:
            json.loads(plain)
        except ValueError:
            content_type = "text/plain"
    return {"kind": Attachment.Kind.DOCUMENT, "content_type": content_type, "data": data, "text": plain}


# --- the service ----------------------------------------------------------------------------------------------
def attachment_create(*, user: User, upload: UploadedFile) -> Attachment:
    """Read, check and store one uploaded file for `user` (the refusals are domain errors; nothing is stored)."""
    limit = settings.CHATWEB_ATTACHMENT_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        raise AttachmentTooLarge(f"The file is larger than {limit // (1024 * 1024)} MB, the limit per file.")
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise AttachmentTooLarge(f"The file is larger than {limit // (1024 * 1024)} MB, the limit per file.")
    if not data:
        raise AttachmentUnreadable("The file is empty.")
    name: str = _clean_name(upload.name or "file")
    found = _read(name, (upload.content_type or "").lower(), data)
    stored: bytes = found.pop("data")
    text = found.pop("text", "")
    attachment = Attachment(owner=user, name=name, size=len(stored), text=text[:MAX_TEXT_CHARS], **found)
    thumbnail = _thumbnail(stored) if attachment.kind == Attachment.Kind.IMAGE else None
    try:
        # Stored before the quota is decided, so that the user's row stays locked for a moment, not for a file write.
        attachment.file.save(attachment.public_id, ContentFile(stored), save=False)
        if thumbnail is not None:
            attachment.thumbnail.save(attachment.public_id, ContentFile(thumbnail), save=False)
        with transaction.atomic():
            # The user's row locked: concurrent uploads of one user are decided one at a time against the quota.
            own_quota = User.objects.select_for_update().filter(pk=user.pk).values_list("attachment_quota", flat=True)
            quota = attachment_quota_of(next(iter(own_quota), None))
            used = attachment_use_by_user([user.pk])[user.pk]
            if used + attachment.size > quota:
                raise AttachmentTooLarge(
                    f"Your attachments would take more than your storage quota ({_megabytes(quota)}; "
                    f"{_megabytes(used)} used); delete conversations with files you no longer need."
                )
            attachment.save()
    except BaseException:
        _stored_files_delete(attachment)
        raise
    return attachment


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):,.1f} MB"


def attachment_quota_of(own_quota: int | None) -> int:
    """A user's storage quota in bytes: their own (set in the admin), else CHATWEB_ATTACHMENT_QUOTA_BYTES."""
    return settings.CHATWEB_ATTACHMENT_QUOTA_BYTES if own_quota is None else own_quota


def attachment_use_by_user(user_ids: Iterable[int]) -> dict[int, int]:
    """The bytes each user's attachments take in storage (the files as stored), in one query."""
    ids = list(user_ids)
    use = dict.fromkeys(ids, 0)
    rows = Attachment.objects.filter(owner_id__in=ids).values("owner_id").annotate(total=Sum("size"))
    for row in rows.order_by():
        use[row["owner_id"]] = row["total"] or 0
    return use


def attachment_payload(attachment: Attachment) -> dict[str, Any]:
    """The upload's answer and what pages and frames show of an attachment."""
    return {"id": attachment.public_id, "name": attachment.name, "kind": attachment.kind,
            "content_type": attachment.content_type, "size": attachment.size}


def attachments_for_send(*, user: User, ids: Iterable[str], conversation: Conversation | None,
                         model: Model) -> list[Attachment]:
    """The user's attachments named by a send, in the order given: each the user's, not sent in another
    conversation, and images only to a model that takes them."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return []
    limit = settings.CHATWEB_ATTACHMENTS_PER_MESSAGE
    if len(ids) > limit:
        raise AttachmentTooLarge(f"A message may carry at most {limit} attachments.")
    found = {a.public_id: a for a in Attachment.objects.for_user(user).filter(public_id__in=ids)}
    for public_id in ids:
        attachment = found.get(public_id)
        if attachment is None or (
            attachment.conversation_id is not None
            and (conversation is None or attachment.conversation_id != conversation.pk)
        ):
            raise NotFound("no such attachment")
    attachments = [found[i] for i in ids]
    images_refused(model, attachments)
    return attachments


def images_refused(model: Model, attachments: Iterable[Attachment]) -> None:
    """Raise AttachmentUnsupported when an image would go to a model without `vision = true`."""
    if not model.vision and any(a.kind == Attachment.Kind.IMAGE for a in attachments):
        raise AttachmentUnsupported(
            f"{model.public_name} does not take images; choose a model that does (marked “images”) "
            "or send the message without them."
        )


def attachments_by_message(message_ids: Iterable[int]) -> dict[int, list[Attachment]]:
    """Each message's attachments, oldest first (one query)."""
    ids = list(message_ids)
    found: dict[int, list[Attachment]] = {}
    if not ids:
        return found
    links = Attachment.messages.through.objects.filter(message_id__in=ids).select_related("attachment")
    for link in links.order_by("attachment__created_at", "attachment_id"):
        found.setdefault(link.message_id, []).append(link.attachment)
    return found


def attachment_data_url(attachment: Attachment) -> str:
    with attachment.file.open("rb") as stored:
        data = stored.read()
    return f"data:{attachment.content_type};base64,{base64.b64encode(data).decode('ascii')}"


def document_text(attachment: Attachment, max_chars: int) -> str:
    """A document's text part: headed by its file name, cut to `max_chars` with a note of what was left out."""
    text = attachment.text
    if not text.strip():
        body = NO_TEXT_NOTE if attachment.content_type == "application/pdf" else "(The file holds no text.)"
    elif len(text) > max_chars:
        left = len(text) - max_chars
        body = f"{text[:max_chars]}\n\n[… {left:,} more characters of this file were left out to fit the context.]"
    else:
        body = text
    return f"{attachment.name}\n\n{body}"


def attachment_reference(attachment: Attachment) -> str:
    """An image part's URL in a prompt that is only counted, never sent (`chat.estimate`): the image's id in place of
    its bytes; `attachment_image_sizes` gives its size to the token count."""
    return f"attachment:{attachment.public_id}"


def attachment_image_sizes(attachments: Iterable[Attachment]) -> dict[str, tuple[int, int]]:
    """The stored images' sizes by their `attachment_reference`."""
    return {attachment_reference(a): (a.width, a.height) for a in attachments
            if a.kind == Attachment.Kind.IMAGE and a.width and a.height}


def attachment_parts(content: str, attachments: list[Attachment], *, document_chars: int,
                     image_url: Callable[[Attachment], str] = attachment_data_url) -> list[dict[str, Any]]:
    """A user message with attachments as OpenAI content parts: its text, each document's text, each image (as a
    data URL, or `image_url` of it)."""
    parts: list[dict[str, Any]] = []
    if content:
        parts.append({"type": "text", "text": content})
    for attachment in attachments:
        if attachment.kind == Attachment.Kind.DOCUMENT:
            parts.append({"type": "text", "text": document_text(attachment, document_chars)})
    for attachment in attachments:
        if attachment.kind == Attachment.Kind.IMAGE:
            parts.append({"type": "image_url", "image_url": {"url": image_url(attachment)}})
    return parts


def message_attachments_link(*, message: Message, attachments: list[Attachment]) -> None:
    """In the caller's transaction: the message carries these attachments, which now go with its conversation."""
    if not attachments:
        return
    through = Attachment.messages.through
    through.objects.bulk_create([through(message_id=message.pk, attachment_id=a.pk) for a in attachments])
    loose = [a.pk for a in attachments if a.conversation_id is None]
    if loose:
        Attachment.objects.filter(pk__in=loose, conversation__isnull=True).update(
            conversation_id=message.conversation_id
        )


UNSENT_BATCH = 500  # uploads deleted per transaction by `attachments_unsent_delete`


def attachments_unsent_delete(*, older_than: timedelta) -> int:
    """Delete the uploads never sent with a message (no message, no conversation) made more than `older_than` ago:
    their rows now, their stored files once each batch commits. Returns how many went."""
    cutoff = timezone.now() - older_than
    unsent = Attachment.objects.filter(conversation__isnull=True, messages__isnull=True, created_at__lt=cutoff)
    deleted = 0
    while True:
        with transaction.atomic():
            batch = list(unsent.order_by("pk").values_list("pk", flat=True)[:UNSENT_BATCH])
            if not batch:
                return deleted
            # Checked again in the deleting statement: one sent meanwhile keeps its file.
            _count, by_model = Attachment.objects.filter(
                pk__in=batch, conversation__isnull=True, messages__isnull=True
            ).delete()
            deleted += by_model.get(Attachment._meta.label, 0)
        if len(batch) < UNSENT_BATCH:
            return deleted


def unsent_max_age() -> timedelta | None:
    """How long an upload may wait to be sent (CHATWEB_ATTACHMENT_UNSENT_HOURS); None: forever."""
    hours = float(settings.CHATWEB_ATTACHMENT_UNSENT_HOURS)
    return timedelta(hours=hours) if hours > 0 else None


def _stored_names(attachment: Attachment) -> list[str]:
    return [f.name for f in (attachment.file, attachment.thumbnail) if f.name]


def _storage_delete(storage: Any, names: list[str]) -> None:
    for name in names:
        try:
            storage.delete(name)
        except OSError:
            log.warning("could not delete the stored attachment %s", name, exc_info=True)


def _stored_files_delete(attachment: Attachment) -> None:
    """Remove the files of an attachment whose row was never saved."""
    _storage_delete(attachment.file.storage, _stored_names(attachment))


def attachment_file_delete(*, attachment: Attachment) -> None:
    """Remove the stored file and its thumbnail once the row's deletion is committed (a rolled-back deletion keeps
    them)."""
    names, storage = _stored_names(attachment), attachment.file.storage
    if names:
        transaction.on_commit(lambda: _storage_delete(storage, names))

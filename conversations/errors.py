"""Domain errors: why a service refuses an action, as a stable code and a sentence for people. Never HTTP-shaped:
the edges map them, the chat consumer to `chat.error` frames (the code is the protocol's, docs/protocol.md),
the /v1 views to OpenAI-shaped errors (conversations/api/errors.py `api_error`), the page views to 400/404/409.

Services raise them from a `check_...` step (which only reads) or from the `do_...` step that re-verifies, under
its lock, what concurrent requests can change (budget, replies streaming at once).
"""

from __future__ import annotations

from decimal import Decimal

from conversations.money import money

ZERO = Decimal(0)


class AdmissionError(Exception):
    """An action refused before anything is written or sent upstream."""

    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(AdmissionError):
    """The request itself is wrong (a parameter out of range, an empty title); `param` names the culprit."""

    code = "bad_request"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class NotFound(AdmissionError):
    """No such conversation, message or preset for this user (another user's ids are simply not found)."""

    code = "not_found"


class ModelUnavailable(NotFound):
    """No model of that name is usable by this user (`name` None: none fits `auto`)."""

    def __init__(self, message: str, *, name: str | None) -> None:
        super().__init__(message)
        self.name = name


class BudgetExceeded(AdmissionError):
    """The request's worst case does not fit in what is left of the user's monthly budget."""

    code = "budget_exceeded"

    def __init__(self, remaining: Decimal, amount: Decimal | None = None, *, group: str | None = None) -> None:
        self.remaining = remaining
        self.amount = amount
        self.group = group  # None: the user's own budget; else the name of the group whose shared budget it is
        which = "your monthly budget" if group is None else f"the monthly budget of group {group!r}"
        if remaining > 0 and amount is not None:
            message = (
                f"This request could cost up to {money(amount)}, more than the {money(remaining)} left of {which}; "
                "lower max_tokens or ask an administrator to raise the budget."
            )
        else:
            over = f"$0 left, over by {money(-remaining)}" if remaining < 0 else "$0 left"
            message = f"{which[0].upper()}{which[1:]} is used up ({over}); ask an administrator to raise it."
        super().__init__(message)


class TooManyReplies(AdmissionError):
    """The user has as many replies streaming at once as allowed."""

    code = "too_many_replies"


class ReplyInProgress(AdmissionError):
    """A reply the action depends on (or would destroy) is still being written."""

    code = "reply_in_progress"


class InvalidApiKey(AdmissionError):
    """No key, a wrong key, a revoked key or a disabled account."""

    code = "invalid_api_key"


class RateLimited(AdmissionError):
    """The key has used up its requests per minute; one is allowed again in `retry_after` seconds."""

    code = "rate_limit_exceeded"

    def __init__(self, *, limit: int, retry_after: float) -> None:
        super().__init__(f"rate limit of {limit} requests per minute reached")
        self.limit = limit
        self.retry_after = retry_after


class AddressBlocked(AdmissionError):
    """The client's address sent too many wrong keys: blocked for `wait` seconds."""

    code = "too_many_failed_keys"

    def __init__(self, *, wait: int) -> None:
        super().__init__(f"address blocked for {wait} s")
        self.wait = wait


class AttachmentRefused(AdmissionError):
    """An uploaded file is refused; nothing is stored. Subclasses say why (each its own HTTP status at the edge)."""

    code = "bad_request"


class AttachmentTooLarge(AttachmentRefused):
    """The file (or its pixels, or what it unpacks to, or the user's storage quota) is beyond the limit."""

    code = "too_large"


class AttachmentTypeUnsupported(AttachmentRefused):
    """The file's content is of no type chatweb reads (whatever its name says)."""

    code = "unsupported_type"


class AttachmentUnreadable(AttachmentRefused):
    """The file claims a supported type but cannot be read: corrupt, encrypted, an image that is not one."""

    code = "unreadable"


class AttachmentUnsupported(AdmissionError):
    """An image would go to a model that does not take images (no `vision = true`)."""

    code = "attachment_unsupported"

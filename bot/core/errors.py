"""The bot's error tree: what a failure means for the person who typed the command.

    BotError
    ├── UserError            shown to the user as is, ephemerally; never logged as an error
    │   ├── CommandSyntaxError     the text after /rollback does not parse
    │   ├── UnknownTarget          not in the catalog (with a suggestion)
    │   ├── TargetNotAllowed       an ad-hoc target outside the allowed namespaces, a channel not allowed
    │   ├── NotAllowedToApprove    a reaction or click from someone the policy does not accept
    │   ├── TargetBusy             another operation holds the target's lock
    │   ├── RevisionNotFound       the requested revision does not exist (lists those that do)
    │   ├── NothingToDo            the target already runs the requested revision
    │   └── RollbackRefused        the backend refuses up front (paused Deployment, pending helm release…)
    ├── TemporaryError(delay)  retried with backoff
    │   ├── BackendUnavailable
    │   ├── ConcurrentUpdate       compare-and-set lost; re-read and decide again
    │   ├── ChatUnavailable
    │   └── StoreUnavailable       the operation store (Redis) cannot be reached or answered with an error
    ├── PermanentError         fails the operation, reason posted in the thread
    │   └── RollbackFailed
    ├── DuplicateOperation     an operation id was created twice: a bug, never retried
    └── FencedOut              an execution write carried a fencing token that is no longer current

Adapters translate foreign exceptions (ApiException, ClientError, SlackApiError, redis errors, helm exit codes)
into these at the seam, with `raise … from exc`, so the flow never sees a vendor type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta


class BotError(Exception):
    """Root of everything the bot raises on purpose."""


class UserError(BotError):
    """A known business reason the request cannot proceed; the message is written for the user."""


class CommandSyntaxError(UserError):
    pass


class UnknownTarget(UserError):
    pass


class TargetNotAllowed(UserError):
    pass


class NotAllowedToApprove(UserError):
    pass


class TargetBusy(UserError):
    """Another operation holds the target's lock; `holder` is the store's `ports.LockInfo` when known.

    For a batch, `holders` maps every busy member's name to its holder (`holder` is the first of them).
    """

    def __init__(
        self, message: str, *, holder: object | None = None, holders: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.holder = holder
        self.holders: Mapping[str, object] = holders or {}


class RevisionNotFound(UserError):
    def __init__(self, message: str, available: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.available = tuple(available)


class NothingToDo(UserError):
    """The target already runs the requested revision (Argo's "skipped rollback")."""


class RollbackRefused(UserError):
    pass


class TemporaryError(BotError):
    """Worth retrying after `delay`."""

    def __init__(self, message: str, delay: timedelta = timedelta(seconds=1)) -> None:
        super().__init__(message)
        self.delay = delay


class BackendUnavailable(TemporaryError):
    pass


class ConcurrentUpdate(TemporaryError):
    pass


class ChatUnavailable(TemporaryError):
    pass


class StoreUnavailable(TemporaryError):
    pass


class PermanentError(BotError):
    pass


class RollbackFailed(PermanentError):
    pass


class DuplicateOperation(BotError):
    """`OperationStore.create` was given an id that already exists."""


class FencedOut(BotError):
    """An execution write carried a fencing token that is no longer the operation's current one.

    Another replica claimed the execution after this one's lease ran out (a paused process, a frozen node).
    The stale writer must stop at once and say nothing more: the record, the lock, the audit trail and the
    Slack thread belong to the new executor.
    """

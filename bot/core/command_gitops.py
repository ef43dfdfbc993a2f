"""The GitOps words of the command grammar, kept beside `commands` so the two change independently.

    /rollback <target> --suspend-sync        pause the target's Argo CD / Flux sync with this rollback
    /rollback resume-sync <target>           restore the sync settings recorded when rollbot paused it

`--suspend-sync` arrives as a generic option (`{"suspend-sync": True}`); `suspend_requested` takes it out of the
options before the backend validates its own. `resume-sync` is a verb parsed here, before `parse_command`.
"""

from __future__ import annotations

from typing import Final

from bot.core.command_tokens import tokenize
from bot.core.commands import (
    MAX_TEXT_LENGTH,
    SLASH_COMMAND,
    RollbackCommand,
    TargetRef,
    _Frozen,
    _parse_target_only,
)
from bot.core.errors import CommandSyntaxError

SUSPEND_FLAG: Final = "suspend-sync"
RESUME_VERB: Final = "resume-sync"
RESUME_USAGE: Final = f"`{SLASH_COMMAND} {RESUME_VERB} <target>`"


class ResumeSyncCommand(_Frozen):
    """`/rollback resume-sync <target>`: approval-gated like a rollback."""

    target: TargetRef


def parse_resume_sync(text: str) -> ResumeSyncCommand | None:
    """The command when `text` starts with `resume-sync`, else None. Raises CommandSyntaxError when malformed."""
    if len(text) > MAX_TEXT_LENGTH:
        return None  # parse_command says why
    tokens = tokenize(text)
    if not tokens or tokens[0].is_quoted or tokens[0].text.lower() != RESUME_VERB:
        return None
    return ResumeSyncCommand(target=_parse_target_only(tokens[1:], RESUME_VERB, RESUME_USAGE))


def suspend_requested(command: RollbackCommand) -> tuple[bool, RollbackCommand]:
    """Whether `--suspend-sync` was given, and the command without it (for the backend's own options)."""
    value = command.options.get(SUSPEND_FLAG)
    if value is None or value is False:
        return False, command
    if value is not True:
        raise CommandSyntaxError(f"`--{SUSPEND_FLAG}` takes no value — write just `--{SUSPEND_FLAG}`")
    options = {name: option for name, option in command.options.items() if name != SUSPEND_FLAG}
    return True, command.model_copy(update={"options": options})

"""The command grammar: what people type after `/rollback`, turned into a typed command or a usage message.

    /rollback <target> [<revision>] [--to-revision N | --revision N] [--dry-run] [--reason "…"] [--backend-flag…]
    /rollback <target> <target>… [--dry-run] [--reason "…"]      (a batch: each to its previous revision)
    /rollback history <target>          /rollback status <target>
    /rollback cancel <operation-id>     /rollback help [topic]          (empty text = help)
    /rollback incidents                 /rollback auto status           /rollback auto resume <context>

A target is a catalog name (`workshop`) or an ad-hoc Kubernetes workload (`deploy/web -n shop`). A revision
follows helm: none or `0` means "the previous one". Flags the grammar does not know are kept as generic options
(`--deregister` → `{"deregister": True}`, `--foo=bar` → `{"foo": "bar"}`) and checked later, once the target's
backend is known, by `validate_options`.

`parse_command` is total: it returns a command or raises `CommandSyntaxError` with one short line a person can
act on, whatever the text (unicode digits, stray quotes, megabytes of input). It is deliberately not a resolver:
whether `workshop` exists, or which revision "previous" is, is decided later (`targets`, the backend).
`render_command` is its inverse: `parse_command(render_command(c)) == c`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.core.catalog import WorkloadKind
from bot.core.command_tokens import QUOTES as _QUOTES
from bot.core.command_tokens import Token as _Token
from bot.core.command_tokens import merge as _merge
from bot.core.command_tokens import quote as quote
from bot.core.command_tokens import shown as _shown
from bot.core.command_tokens import split_flag as _split_flag
from bot.core.command_tokens import take_value as _take_value
from bot.core.command_tokens import tokenize as _tokenize
from bot.core.errors import CommandSyntaxError
from bot.core.operations import OperationId
from bot.core.rollouts import BackendOption, RevisionNumber

# The errors name the command as people usually configure it; ROLLBOT_SLASH_COMMAND renames it in Slack only.
SLASH_COMMAND: Final = "/rollback"
USAGE: Final = f'`{SLASH_COMMAND} <target> [revision] [--dry-run] [--reason "…"]`'
HISTORY_USAGE: Final = f"`{SLASH_COMMAND} history <target>`"
STATUS_USAGE: Final = f"`{SLASH_COMMAND} status <target>`"
CANCEL_USAGE: Final = f"`{SLASH_COMMAND} cancel <operation-id>`"
AUTO_USAGE: Final = f"`{SLASH_COMMAND} auto status` or `{SLASH_COMMAND} auto resume <context>`"
WORKLOAD_USAGE: Final = "`deploy/NAME`, `ds/NAME` or `sts/NAME` with `-n NAMESPACE`"

# Slack caps a slash command's text well below this; anything longer is pasted by mistake, not typed.
MAX_TEXT_LENGTH: Final = 4000
# A reason is shown in the request message and the audit trail; a paragraph belongs in the incident doc.
MAX_REASON_LENGTH: Final = 500
# Helm and ECS revisions are 32-bit integers; and int() refuses strings over 4300 digits, so we check first.
MAX_REVISION: Final = 2**31 - 1
# A batch rolls many targets back at once (a mass outage); more than this is a typo or a paste, not a request.
MAX_BATCH_TARGETS: Final = 100

VERBS: Final = frozenset({"help", "history", "status", "cancel", "auto"})

_KIND_ALIASES: Final[Mapping[str, WorkloadKind]] = {
    "deploy": WorkloadKind.DEPLOYMENT,
    "deployment": WorkloadKind.DEPLOYMENT,
    "deployments": WorkloadKind.DEPLOYMENT,
    "ds": WorkloadKind.DAEMONSET,
    "daemonset": WorkloadKind.DAEMONSET,
    "daemonsets": WorkloadKind.DAEMONSET,
    "sts": WorkloadKind.STATEFULSET,
    "statefulset": WorkloadKind.STATEFULSET,
    "statefulsets": WorkloadKind.STATEFULSET,
}
# How a workload is written back (render_command, display names): kubectl's short names.
KIND_SHORT_NAMES: Final[Mapping[WorkloadKind, str]] = {
    WorkloadKind.DEPLOYMENT: "deploy",
    WorkloadKind.DAEMONSET: "ds",
    WorkloadKind.STATEFULSET: "sts",
}

# Catalog names are lowercase (catalog.py); upper case is accepted here so the resolver can still suggest.
_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# Kubernetes object names (RFC 1123 subdomain) and namespaces (RFC 1123 label), as in catalog.py.
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_K8S_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# A kube context or AWS region, as kubeconfigs and ARNs spell them (`arn:aws:eks:…:cluster/prod`, `user@prod`).
_CONTEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,252}")
_OPERATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
# ASCII only on purpose: "፩".isdigit() is true but int("፩") is not what anybody meant.
_REVISION = re.compile(r"[0-9]+")
_NEGATIVE_NUMBER = re.compile(r"-[0-9]+")

# Flags the grammar itself understands; everything else is a backend option.
_REVISION_FLAGS: Final = frozenset({"to-revision", "revision"})
_NAMESPACE_FLAGS: Final = frozenset({"namespace", "n"})
RESERVED_FLAGS: Final = frozenset({"dry-run", "reason", "help", "h"} | _REVISION_FLAGS | _NAMESPACE_FLAGS)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetRef(_Frozen):
    """What the user named: a catalog target (`kind is None`) or an ad-hoc Kubernetes workload."""

    name: str
    kind: WorkloadKind | None = None
    namespace: str | None = None

    @model_validator(mode="after")
    def _namespace_goes_with_kind(self) -> TargetRef:
        if (self.kind is None) != (self.namespace is None):
            raise ValueError("an ad-hoc workload needs both kind and namespace; a catalog name has neither")
        return self

    @classmethod
    def catalog(cls, name: str) -> TargetRef:
        return cls(name=name)

    @classmethod
    def workload(cls, kind: WorkloadKind, name: str, namespace: str = "default") -> TargetRef:
        return cls(name=name, kind=kind, namespace=namespace)

    @property
    def is_ad_hoc(self) -> bool:
        return self.kind is not None

    @property
    def display(self) -> str:
        """How people write it: `workshop`, or `deploy/web -n shop`."""
        return " ".join(_target_words(self))


class RollbackCommand(_Frozen):
    target: TargetRef
    # None = the previous revision (helm's 0); the backend resolves it into a number for the preview.
    to_revision: RevisionNumber | None = None
    dry_run: bool = False
    reason: str | None = None
    # Backend-specific flags, unvalidated until the backend is known (see validate_options).
    options: dict[str, bool | str] = Field(default_factory=dict)
    # `/rollback bootcamp workshop api`: the targets after the first; with any, the command is a batch.
    more_targets: tuple[TargetRef, ...] = ()

    @model_validator(mode="after")
    def _batches_go_to_previous(self) -> RollbackCommand:
        if self.more_targets and self.to_revision is not None:
            raise ValueError("a batch rolls every target back to its previous revision; it takes no revision")
        return self

    @property
    def targets(self) -> tuple[TargetRef, ...]:
        return (self.target, *self.more_targets)


class HistoryCommand(_Frozen):
    target: TargetRef


class StatusCommand(_Frozen):
    target: TargetRef


class HelpCommand(_Frozen):
    topic: str | None = None


class CancelCommand(_Frozen):
    operation_id: OperationId


class IncidentsCommand(_Frozen):
    """`/rollback incidents`: the open incidents, with links to their cards."""


class AutoStatusCommand(_Frozen):
    """`/rollback auto status`: the automatic-rollback limits, breakers and next countdowns."""


class AutoResumeCommand(_Frozen):
    """`/rollback auto resume <context>`: close a context's tripped breaker."""

    context: str


Command = (
    RollbackCommand
    | HistoryCommand
    | StatusCommand
    | HelpCommand
    | CancelCommand
    | IncidentsCommand
    | AutoStatusCommand
    | AutoResumeCommand
)

# --- parsing ---------------------------------------------------------------------------------------------------


def parse_command(
    text: str,
    backend_options: Mapping[str, BackendOption] | None = None,
    known_names: Collection[str] = (),
) -> Command:
    """Parse the text after `/rollback`. Raises CommandSyntaxError, and nothing else, when it does not parse.

    `backend_options` tells which unknown flags take a value (`--cluster prod` rather than `--cluster=prod`).
    `known_names` (catalog targets and groups) tells a batch (`/rollback bootcamp workshop`) from a mistyped
    revision (`/rollback workshop latest`): a word after the target is another target only if it is a known
    name or an ad-hoc `kind/name`.
    """
    if len(text) > MAX_TEXT_LENGTH:
        raise CommandSyntaxError(f"that command is too long ({len(text)} characters) — usage: {USAGE}")
    tokens = _tokenize(text)
    if not tokens:
        return HelpCommand()
    verb = "" if tokens[0].is_quoted else tokens[0].text.lower()
    if any(token.is_flag and token.text in ("--help", "-h") for token in tokens):
        return HelpCommand(topic=verb if verb in VERBS - {"help"} else None)
    rest = tokens[1:]
    if verb == "help":
        return HelpCommand(topic=" ".join(token.text for token in rest) or None)
    if verb == "history":
        return HistoryCommand(target=_parse_target_only(rest, "history", HISTORY_USAGE))
    if verb == "status":
        return StatusCommand(target=_parse_target_only(rest, "status", STATUS_USAGE))
    if verb == "cancel":
        return CancelCommand(operation_id=_parse_operation_id(rest))
    if verb == "incidents" and not rest and "incidents" not in known_names:
        return IncidentsCommand()
    if verb == "auto":
        return _parse_auto(rest)
    return _parse_rollback(tokens, backend_options or {}, frozenset(known_names))


def _parse_target_only(tokens: list[_Token], verb: str, usage: str) -> TargetRef:
    positionals: list[_Token] = []
    namespace: str | None = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.is_flag:
            positionals.append(token)
            continue
        name, value = _split_flag(token, usage)
        if name not in _NAMESPACE_FLAGS:
            raise CommandSyntaxError(f"`{verb}` takes only a target, not `{_shown(token.text)}` — usage: {usage}")
        if value is None:
            value, i = _take_value(tokens, i, token.text, "NAMESPACE")
        namespace = _merge(namespace, _parse_namespace(value), "namespace")
    if not positionals:
        raise CommandSyntaxError(f"`{verb}` needs a target: {usage}")
    if len(positionals) > 1:
        raise CommandSyntaxError(f"`{verb}` takes one target, not `{_shown(positionals[1].text)}` too: {usage}")
    return _parse_target(positionals[0], namespace, usage)


def _parse_operation_id(tokens: list[_Token]) -> OperationId:
    if not tokens:
        raise CommandSyntaxError(f"`cancel` needs an operation id: {CANCEL_USAGE}")
    if len(tokens) > 1:
        raise CommandSyntaxError(f"`cancel` takes one operation id: {CANCEL_USAGE}")
    word = tokens[0].text
    if not _OPERATION_ID.fullmatch(word):
        raise CommandSyntaxError(f"`{_shown(word)}` is not an operation id — usage: {CANCEL_USAGE}")
    return OperationId(word)


def _parse_auto(tokens: list[_Token]) -> AutoStatusCommand | AutoResumeCommand:
    words = [token.text for token in tokens]
    if words == ["status"]:
        return AutoStatusCommand()
    if len(words) == 2 and words[0] == "resume":
        if not _CONTEXT.fullmatch(words[1]):
            raise CommandSyntaxError(
                f"`{_shown(words[1])}` is not a cluster context or AWS region — usage: {AUTO_USAGE}"
            )
        return AutoResumeCommand(context=words[1])
    if words[:1] == ["resume"]:
        raise CommandSyntaxError(f"`auto resume` takes one context (as `auto status` names it): {AUTO_USAGE}")
    unknown = f"`{_shown(' '.join(words))}` is not an `auto` command — " if words else ""
    raise CommandSyntaxError(f"{unknown}usage: {AUTO_USAGE}")


def _parse_rollback(
    tokens: list[_Token], backend_options: Mapping[str, BackendOption], known_names: frozenset[str]
) -> RollbackCommand:
    positionals: list[_Token] = []
    revisions: list[str] = []
    namespace: str | None = None
    reason: str | None = None
    dry_run = False
    options: dict[str, bool | str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.is_flag:
            positionals.append(token)
            continue
        if _NEGATIVE_NUMBER.fullmatch(token.text):
            raise _revision_error(token.text)
        name, value = _split_flag(token, USAGE)
        if name == "dry-run":
            if value is not None:
                raise CommandSyntaxError(f"`--dry-run` takes no value — usage: {USAGE}")
            dry_run = True
        elif name in _REVISION_FLAGS:
            if value is None:
                value, i = _take_value(tokens, i, token.text, "N")
            revisions.append(value)
        elif name in _NAMESPACE_FLAGS:
            if value is None:
                value, i = _take_value(tokens, i, token.text, "NAMESPACE")
            namespace = _merge(namespace, _parse_namespace(value), "namespace")
        elif name == "reason":
            if value is None:
                value, i = _take_value(tokens, i, token.text, '"…"')
            reason = _merge(reason, _parse_reason(value), "reason")
        else:
            declared = backend_options.get(name)
            if value is None and declared is not None and declared.takes_value:
                value, i = _take_value(tokens, i, token.text, "VALUE")
            options[name] = _merge(options.get(name), True if value is None else value, f"--{name}")
    if not positionals:
        raise CommandSyntaxError(f"which target? usage: {USAGE}")
    named = [token for token in positionals[1:] if _is_another_target(token, known_names)]
    numbered = [token for token in positionals[1:] if token not in named]
    if numbered:
        revisions.insert(0, numbered[0].text)
    if len(numbered) > 1:
        extra = _shown(numbered[1].text)
        if reason is not None and not any(ch.isspace() for ch in reason):
            raise CommandSyntaxError(
                f'unexpected `{extra}` — put a reason with spaces in quotes: `--reason "db migration broke"`'
            )
        raise CommandSyntaxError(f"unexpected `{extra}` — usage: {USAGE}")
    if named and revisions:
        raise CommandSyntaxError(
            f"a batch rolls every target back to its previous revision — drop `{_shown(revisions[0])}`, "
            "or roll that target back on its own to pick a revision"
        )
    if len(positionals) > MAX_BATCH_TARGETS:
        raise CommandSyntaxError(f"at most {MAX_BATCH_TARGETS} targets in one batch, not {len(positionals)}")
    more_targets = tuple(_parse_target(token, namespace, USAGE) for token in named)
    target = _parse_target(positionals[0], namespace, USAGE)
    twice = next((ref for i, ref in enumerate(more_targets) if ref in (target, *more_targets[:i])), None)
    if twice is not None:
        raise CommandSyntaxError(f"`{_shown(twice.display)}` is named twice — name each target once")
    numbers = [_parse_revision(word) for word in revisions]
    other = next((word for word, number in zip(revisions, numbers, strict=True) if number != numbers[0]), None)
    if other is not None:
        raise CommandSyntaxError(
            f"conflicting revisions `{_shown(revisions[0])}` and `{_shown(other)}` — give the revision once"
        )
    to_revision = RevisionNumber(numbers[0]) if numbers and numbers[0] else None
    return RollbackCommand(
        target=target,
        to_revision=to_revision,
        dry_run=dry_run,
        reason=reason,
        options=options,
        more_targets=more_targets,
    )


def _is_another_target(token: _Token, known_names: frozenset[str]) -> bool:
    return not token.is_quoted and ("/" in token.text or token.text.lower() in known_names)


def _parse_target(token: _Token, namespace: str | None, usage: str) -> TargetRef:
    word = token.text
    if "/" in word:
        kind_word, _, name = word.partition("/")
        kind = _KIND_ALIASES.get(kind_word.lower())
        if kind is None:
            raise CommandSyntaxError(f"unknown workload kind `{_shown(kind_word)}` — use {WORKLOAD_USAGE}")
        if not _K8S_NAME.fullmatch(name):
            raise CommandSyntaxError(
                f"`{_shown(name)}` is not a Kubernetes name (lowercase, digits, `-`, `.`) — use {WORKLOAD_USAGE}"
            )
        return TargetRef.workload(kind, name, namespace or "default")
    if namespace is not None:
        raise CommandSyntaxError(f"`-n`/`--namespace` only applies to ad-hoc workloads: {WORKLOAD_USAGE}")
    if not _TARGET_NAME.fullmatch(word):
        raise CommandSyntaxError(
            f"`{_shown(word)}` is not a target name (letters, digits, `-`, `_`, `.`) — usage: {usage}"
        )
    return TargetRef.catalog(word)


def _parse_namespace(value: str) -> str:
    if not _K8S_NAMESPACE.fullmatch(value):
        raise CommandSyntaxError(f"`{_shown(value)}` is not a Kubernetes namespace (lowercase letters, digits and `-`)")
    return value


def _parse_revision(word: str) -> int:
    if not _REVISION.fullmatch(word):
        raise _revision_error(word)
    if len(word.lstrip("0")) > len(str(MAX_REVISION)) or int(word) > MAX_REVISION:
        raise CommandSyntaxError(f"revision `{_shown(word)}` is too large — revisions are numbers like `3`")
    return int(word)


def _revision_error(word: str) -> CommandSyntaxError:
    return CommandSyntaxError(f"revision must be a whole number like `3`, not `{_shown(word)}`")


def _parse_reason(value: str) -> str:
    reason = value.strip()
    if not reason:
        raise CommandSyntaxError('`--reason` needs some text, like `--reason "db migration broke"`')
    if len(reason) > MAX_REASON_LENGTH:
        raise CommandSyntaxError(
            f"the reason is too long ({len(reason)} chars, at most {MAX_REASON_LENGTH}) — link the incident instead"
        )
    return reason


# --- rendering -------------------------------------------------------------------------------------------------


def render_command(command: Command) -> str:
    """The text that parses back into `command` (without the leading `/rollback`)."""
    return " ".join(command_words(command))


def command_words(command: Command) -> list[str]:
    """The words `render_command` joins; any whitespace between them parses the same."""
    match command:
        case RollbackCommand():
            words = [word for ref in command.targets for word in _target_words(ref)]
            if command.to_revision is not None:
                words.append(str(command.to_revision))
            if command.dry_run:
                words.append("--dry-run")
            if command.reason is not None:
                words += ["--reason", quote(command.reason)]
            for name, value in sorted(command.options.items()):
                if value is True:
                    words.append(f"--{name}")
                elif isinstance(value, str):
                    needs_quotes = value[:1] in _QUOTES or any(ch.isspace() for ch in value)
                    words.append(f"--{name}={quote(value) if needs_quotes else value}")
                # False: the same as not giving the flag at all.
            return words
        case HistoryCommand() | StatusCommand():
            verb = "history" if isinstance(command, HistoryCommand) else "status"
            return [verb, *_target_words(command.target)]
        case HelpCommand():
            return ["help"] if command.topic is None else ["help", command.topic]
        case IncidentsCommand():
            return ["incidents"]
        case AutoStatusCommand():
            return ["auto", "status"]
        case AutoResumeCommand():
            return ["auto", "resume", command.context]
        case _:
            return ["cancel", command.operation_id]


def _target_words(ref: TargetRef) -> list[str]:
    if ref.kind is None:
        return [ref.name]
    return [f"{KIND_SHORT_NAMES[ref.kind]}/{ref.name}", "-n", str(ref.namespace)]


# --- backend options -------------------------------------------------------------------------------------------


def validate_options(command: RollbackCommand, declared: Sequence[BackendOption]) -> None:
    """Check the generic flags against what the target's backend declares. Raises CommandSyntaxError."""
    by_name = {option.name: option for option in declared}
    for name, value in sorted(command.options.items()):
        option = by_name.get(name)
        if option is None:
            if not declared:
                raise CommandSyntaxError(f"unknown option `--{name}` — usage: {USAGE}")
            accepted = ", ".join(f"`--{known}`" for known in sorted(by_name))
            raise CommandSyntaxError(f"unknown option `--{name}` — this target also accepts {accepted}")
        if option.takes_value and not isinstance(value, str):
            raise CommandSyntaxError(f"`--{name}` needs a value: `--{name}=VALUE`")
        if not option.takes_value and isinstance(value, str):
            raise CommandSyntaxError(f"`--{name}` takes no value — write just `--{name}`")
    for name in sorted(command.options):
        for other in by_name[name].conflicts_with:
            if other in command.options:
                raise CommandSyntaxError(f"`--{name}` can't be combined with `--{other}` — pick one")

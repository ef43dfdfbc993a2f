"""The /rollback grammar: examples for every form and every error, and properties over arbitrary text."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.core.catalog import WorkloadKind
from bot.core.commands import (
    MAX_REASON_LENGTH,
    MAX_REVISION,
    RESERVED_FLAGS,
    VERBS,
    AutoResumeCommand,
    AutoStatusCommand,
    CancelCommand,
    Command,
    HelpCommand,
    HistoryCommand,
    RollbackCommand,
    StatusCommand,
    TargetRef,
    command_words,
    parse_command,
    quote,
    render_command,
    validate_options,
)
from bot.core.errors import CommandSyntaxError
from bot.core.operations import OperationId
from bot.core.rollouts import BackendOption, RevisionNumber

WORKSHOP = TargetRef.catalog("workshop")
WEB = TargetRef.workload(WorkloadKind.DEPLOYMENT, "web", "shop")
USAGE = '`/rollback <target> [revision] [--dry-run] [--reason "…"]`'

ECS_OPTIONS = (
    BackendOption(name="deregister", help="deregister the task definition", conflicts_with=("no-wait",)),
    BackendOption(name="no-wait", help="don't wait for the rollout"),
    BackendOption(name="cluster", help="cluster name", takes_value=True),
)


def rollback(target: TargetRef = WORKSHOP, revision: int | None = None, **fields: object) -> RollbackCommand:
    to_revision = None if revision is None else RevisionNumber(revision)
    return RollbackCommand(target=target, to_revision=to_revision, **fields)  # type: ignore[arg-type]


# --- what parses --------------------------------------------------------------------------------------------------

PARSES: list[tuple[str, Command]] = [
    ("workshop", rollback()),
    ("workshop 1", rollback(revision=1)),
    ("workshop 0", rollback()),
    ("workshop 007", rollback(revision=7)),
    ("workshop --to-revision=2", rollback(revision=2)),
    ("workshop --to-revision 2", rollback(revision=2)),
    ("workshop --revision 2", rollback(revision=2)),
    ("workshop --revision=2", rollback(revision=2)),
    ("workshop 2 --to-revision 2", rollback(revision=2)),
    ("workshop 0 --to-revision 0", rollback()),
    ("workshop --dry-run", rollback(dry_run=True)),
    ("--dry-run workshop 3", rollback(revision=3, dry_run=True)),
    ('workshop --reason "db migration broke"', rollback(reason="db migration broke")),
    ("workshop --reason 'db migration broke'", rollback(reason="db migration broke")),
    ("workshop --reason “db migration broke”", rollback(reason="db migration broke")),
    ("workshop --reason ‘db migration broke’", rollback(reason="db migration broke")),
    ("workshop --reason ”db migration broke”", rollback(reason="db migration broke")),
    ("workshop --reason „db migration broke“", rollback(reason="db migration broke")),
    ("workshop --reason=broken", rollback(reason="broken")),
    ("workshop --reason broken 2", rollback(revision=2, reason="broken")),
    ('workshop --reason="two words"', rollback(reason="two words")),
    ("workshop --reason 'it's broken'", rollback(reason="it's broken")),
    ('workshop --reason "  padded  "', rollback(reason="padded")),
    ('workshop --reason "say "hi""', rollback(reason='say "hi"')),
    ('workshop --reason "--dry-run"', rollback(reason="--dry-run")),
    ("workshop --reason a --reason a", rollback(reason="a")),
    ("workshop --deregister", rollback(options={"deregister": True})),
    ("workshop --deregister --deregister", rollback(options={"deregister": True})),
    ("workshop --foo=bar", rollback(options={"foo": "bar"})),
    ('workshop --foo="a b"', rollback(options={"foo": "a b"})),
    ("workshop --foo=a=b", rollback(options={"foo": "a=b"})),
    ("deploy/web -n shop", rollback(WEB)),
    ("deployment/web -n shop", rollback(WEB)),
    ("deployments/web --namespace shop", rollback(WEB)),
    ("Deploy/web --namespace=shop", rollback(WEB)),
    ("-n shop deploy/web 3", rollback(WEB, 3)),
    ("deploy/web -n shop -n shop", rollback(WEB)),
    ("deploy/web", rollback(TargetRef.workload(WorkloadKind.DEPLOYMENT, "web"))),
    ("ds/fluentd -n kube-system", rollback(TargetRef.workload(WorkloadKind.DAEMONSET, "fluentd", "kube-system"))),
    ("daemonset/fluentd", rollback(TargetRef.workload(WorkloadKind.DAEMONSET, "fluentd"))),
    ("daemonsets/fluentd", rollback(TargetRef.workload(WorkloadKind.DAEMONSET, "fluentd"))),
    ("sts/db", rollback(TargetRef.workload(WorkloadKind.STATEFULSET, "db"))),
    ("statefulset/db", rollback(TargetRef.workload(WorkloadKind.STATEFULSET, "db"))),
    ("statefulsets/db.v2", rollback(TargetRef.workload(WorkloadKind.STATEFULSET, "db.v2"))),
    ("WorkShop", rollback(TargetRef.catalog("WorkShop"))),
    ("payload", rollback(TargetRef.catalog("payload"))),
    ('"workshop" 1', rollback(revision=1)),
    ("workshop\u00a01", rollback(revision=1)),
    ("\t workshop \n 1 \u3000", rollback(revision=1)),
    ("history workshop", HistoryCommand(target=WORKSHOP)),
    ("History workshop", HistoryCommand(target=WORKSHOP)),
    ("history deploy/web -n shop", HistoryCommand(target=WEB)),
    ("history --namespace=shop deploy/web", HistoryCommand(target=WEB)),
    ("status workshop", StatusCommand(target=WORKSHOP)),
    ("status deploy/web --namespace shop", StatusCommand(target=WEB)),
    ("help", HelpCommand()),
    ("", HelpCommand()),
    ("   \n ", HelpCommand()),
    ("help history", HelpCommand(topic="history")),
    ("help ad-hoc targets", HelpCommand(topic="ad-hoc targets")),
    ("--help", HelpCommand()),
    ("-h", HelpCommand()),
    ("workshop 3 --help", HelpCommand()),
    ("history --help", HelpCommand(topic="history")),
    ("cancel op-42", CancelCommand(operation_id=OperationId("op-42"))),
    ("cancel 01J9Z:abc_d.e", CancelCommand(operation_id=OperationId("01J9Z:abc_d.e"))),
]


@pytest.mark.parametrize(("text", "expected"), PARSES, ids=[text or "<empty>" for text, _ in PARSES])
def test_text_parses_into_the_expected_command(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


def test_a_declared_option_that_takes_a_value_consumes_the_next_word() -> None:
    declared = {option.name: option for option in ECS_OPTIONS}
    command = parse_command("workshop --cluster prod 3 --no-wait", declared)
    assert command == rollback(revision=3, options={"cluster": "prod", "no-wait": True})


def test_a_declared_option_that_takes_a_value_needs_one() -> None:
    declared = {option.name: option for option in ECS_OPTIONS}
    with pytest.raises(CommandSyntaxError, match=r"`--cluster` needs a value: `--cluster VALUE`"):
        parse_command("workshop --cluster", declared)


# --- what does not parse, and what the user is told ---------------------------------------------------------------

ERRORS: list[tuple[str, str]] = [
    # Without the backend's declarations, an unknown flag is a switch and the next word a revision.
    ("workshop --cluster prod", "revision must be a whole number like `3`, not `prod`"),
    ("workshop abc", "revision must be a whole number like `3`, not `abc`"),
    ("workshop ፩", "revision must be a whole number like `3`, not `፩`"),
    ("workshop ３", "revision must be a whole number like `3`, not `３`"),
    ("workshop -1", "revision must be a whole number like `3`, not `-1`"),
    ("workshop 1.5", "revision must be a whole number like `3`, not `1.5`"),
    ("workshop --to-revision=two", "revision must be a whole number like `3`, not `two`"),
    ("workshop 2147483648", "revision `2147483648` is too large — revisions are numbers like `3`"),
    ("workshop " + "9" * 3000, "revision `" + "9" * 39 + "…` is too large — revisions are numbers like `3`"),
    ("workshop 2 --to-revision 3", "conflicting revisions `2` and `3` — give the revision once"),
    ("workshop 0 --revision=3", "conflicting revisions `0` and `3` — give the revision once"),
    ("workshop 2 --revision=2 --to-revision 5", "conflicting revisions `2` and `5` — give the revision once"),
    ("workshop 2 --revision=5 --to-revision 2", "conflicting revisions `2` and `5` — give the revision once"),
    ("workshop --to-revision", "`--to-revision` needs a value: `--to-revision N`"),
    ("workshop --to-revision --dry-run", "`--to-revision` needs a value: `--to-revision N`"),
    ("workshop --reason", '`--reason` needs a value: `--reason "…"`'),
    ('workshop --reason ""', '`--reason` needs some text, like `--reason "db migration broke"`'),
    ('workshop --reason " "', '`--reason` needs some text, like `--reason "db migration broke"`'),
    (
        f'workshop --reason "{"x" * (MAX_REASON_LENGTH + 1)}"',
        "the reason is too long (501 chars, at most 500) — link the incident instead",
    ),
    ("workshop --reason a --reason b", "reason given twice with different values — give it once"),
    ("workshop --foo=a --foo=b", "--foo given twice with different values — give it once"),
    ("deploy/web -n shop -n prod", "namespace given twice with different values — give it once"),
    ("workshop --dry-run=yes", f"`--dry-run` takes no value — usage: {USAGE}"),
    ("workshop --foo=", "`--foo=` needs a value after the `=`"),
    ("workshop -x", f"unknown option `-x` — usage: {USAGE}"),
    ("workshop --", f"unknown option `--` — usage: {USAGE}"),
    ("workshop --bad!name", f"unknown option `--bad!name` — usage: {USAGE}"),
    (
        "workshop -n shop",
        "`-n`/`--namespace` only applies to ad-hoc workloads: `deploy/NAME`, `ds/NAME` or "
        "`sts/NAME` with `-n NAMESPACE`",
    ),
    ("deploy/web -n Bad_NS", "`Bad_NS` is not a Kubernetes namespace (lowercase letters, digits and `-`)"),
    ("deploy/web -n", "`-n` needs a value: `-n NAMESPACE`"),
    (
        "deploy/Web",
        "`Web` is not a Kubernetes name (lowercase, digits, `-`, `.`) — use `deploy/NAME`, `ds/NAME` "
        "or `sts/NAME` with `-n NAMESPACE`",
    ),
    (
        "deploy/",
        "`` is not a Kubernetes name (lowercase, digits, `-`, `.`) — use `deploy/NAME`, `ds/NAME` "
        "or `sts/NAME` with `-n NAMESPACE`",
    ),
    ("svc/web", "unknown workload kind `svc` — use `deploy/NAME`, `ds/NAME` or `sts/NAME` with `-n NAMESPACE`"),
    ("wörkshop", f"`wörkshop` is not a target name (letters, digits, `-`, `_`, `.`) — usage: {USAGE}"),
    ("work`shop", f"`work'shop` is not a target name (letters, digits, `-`, `_`, `.`) — usage: {USAGE}"),
    ("-", f"`-` is not a target name (letters, digits, `-`, `_`, `.`) — usage: {USAGE}"),
    ("--dry-run", f"which target? usage: {USAGE}"),
    ("workshop 1 2", f"unexpected `2` — usage: {USAGE}"),
    (
        "workshop --reason db migration broke",
        'unexpected `broke` — put a reason with spaces in quotes: `--reason "db migration broke"`',
    ),
    ('"unclosed', 'unclosed quote `"` — quote the whole reason, like `--reason "db migration broke"`'),
    (
        'workshop --reason="unclosed',
        'unclosed quote `"` — quote the whole reason, like `--reason "db migration broke"`',
    ),
    (
        "workshop --reason “never closed",
        'unclosed quote `“` — quote the whole reason, like `--reason "db migration broke"`',
    ),
    ("x" * 4001, f"that command is too long (4001 characters) — usage: {USAGE}"),
    ("history", "`history` needs a target: `/rollback history <target>`"),
    ("status", "`status` needs a target: `/rollback status <target>`"),
    ("history a b", "`history` takes one target, not `b` too: `/rollback history <target>`"),
    ("status workshop --dry-run", "`status` takes only a target, not `--dry-run` — usage: `/rollback status <target>`"),
    ("history workshop -x", "unknown option `-x` — usage: `/rollback history <target>`"),
    (
        "history workshop -n shop",
        "`-n`/`--namespace` only applies to ad-hoc workloads: `deploy/NAME`, `ds/NAME` or "
        "`sts/NAME` with `-n NAMESPACE`",
    ),
    ("history deploy/web -n", "`-n` needs a value: `-n NAMESPACE`"),
    ("cancel", "`cancel` needs an operation id: `/rollback cancel <operation-id>`"),
    ("cancel a b", "`cancel` takes one operation id: `/rollback cancel <operation-id>`"),
    ("cancel !!", "`!!` is not an operation id — usage: `/rollback cancel <operation-id>`"),
    ("workshop " + "y" * 100, f"revision must be a whole number like `3`, not `{'y' * 39}…`"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=[text[:40] for text, _ in ERRORS])
def test_malformed_text_gets_a_short_actionable_message(text: str, message: str) -> None:
    with pytest.raises(CommandSyntaxError) as raised:
        parse_command(text)
    assert str(raised.value) == message
    assert "\n" not in str(raised.value)


# --- properties ---------------------------------------------------------------------------------------------------

# The grammar's own words and its edges: quotes of every kind, unicode digits, flags, separators.
VOCABULARY = [
    "workshop",
    "deploy/web",
    "ds/x",
    "svc/y",
    "history",
    "status",
    "cancel",
    "help",
    "payload",
    "op-1",
    "1",
    "0",
    "42",
    "-1",
    "፩",
    "٣",
    "²",
    "2147483648",
    "--dry-run",
    "--reason",
    "--reason=",
    "--to-revision",
    "--revision=3",
    "--to-revision=",
    "-n",
    "--namespace",
    "--namespace=shop",
    "shop",
    "--deregister",
    "--foo=bar",
    "--help",
    "-h",
    "--",
    "-",
    "=",
    '"',
    "'",
    "“",
    "”",
    "‘",
    "’",
    "„",
    '"a b"',
    "'it's'",
    "“x y”",
    "`",
    "/",
]
WHITESPACE = st.sampled_from([" ", "  ", "\t", "\n", "\u00a0", "\u2003", "\u3000"])


def assert_total(text: str) -> None:
    try:
        command = parse_command(text)
    except CommandSyntaxError as error:
        message = str(error)
        assert message
        assert "\n" not in message
        assert len(message) < 300
    else:
        assert isinstance(command, RollbackCommand | HistoryCommand | StatusCommand | HelpCommand | CancelCommand)


@given(st.text())
@example("workshop ፩")
@example('workshop --reason "')
@example("workshop --reason=“")
@example("payload=1&command=/rollback")
def test_any_text_parses_or_gets_a_syntax_error(text: str) -> None:
    assert_total(text)


@given(st.lists(st.tuples(st.sampled_from(VOCABULARY), WHITESPACE), max_size=8))
def test_any_sequence_of_grammar_words_parses_or_gets_a_syntax_error(words: list[tuple[str, str]]) -> None:
    assert_total("".join(word + space for word, space in words))


@given(st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1).filter(lambda text: not text.isascii()))
@example("፩")
@example("1²")
def test_unicode_digits_are_never_taken_for_a_revision(digits: str) -> None:
    with pytest.raises(CommandSyntaxError, match="revision must be a whole number"):
        parse_command(f"workshop {digits}")


@given(st.integers(min_value=0, max_value=MAX_REVISION))
def test_ascii_revisions_parse_with_zero_meaning_previous(number: int) -> None:
    assert parse_command(f"workshop {number}") == rollback(revision=number or None)


def test_a_megabyte_of_text_is_refused_quickly() -> None:
    with pytest.raises(CommandSyntaxError, match="too long"):
        parse_command("workshop " * 120_000)


# --- round trip ---------------------------------------------------------------------------------------------------


def _is_quotable(text: str) -> bool:
    try:
        quote(text)
    except ValueError:
        return False
    return True


catalog_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True).filter(
    lambda name: name.lower() not in VERBS
)
target_refs = st.one_of(
    catalog_names.map(TargetRef.catalog),
    st.builds(
        TargetRef.workload,
        st.sampled_from(WorkloadKind),
        st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?", fullmatch=True),
        st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True),
    ),
)
reasons = st.text(min_size=1, max_size=MAX_REASON_LENGTH).map(str.strip).filter(bool).filter(_is_quotable)
option_values = st.one_of(st.just(True), st.text(min_size=1, max_size=30).filter(_is_quotable))
options = st.dictionaries(
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,15}", fullmatch=True).filter(lambda name: name not in RESERVED_FLAGS),
    option_values,
    max_size=3,
)
commands = st.one_of(
    st.builds(
        RollbackCommand,
        target=target_refs,
        to_revision=st.none() | st.integers(1, MAX_REVISION).map(RevisionNumber),
        dry_run=st.booleans(),
        reason=st.none() | reasons,
        options=options,
    ),
    st.builds(HistoryCommand, target=target_refs),
    st.builds(StatusCommand, target=target_refs),
    st.builds(
        HelpCommand,
        topic=st.none() | st.from_regex(r"[a-z][a-z0-9-]{0,10}( [a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
    ),
    st.builds(CancelCommand, operation_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,30}", fullmatch=True)),
)


@given(commands)
def test_rendered_commands_parse_back_to_themselves(command: Command) -> None:
    assert parse_command(render_command(command)) == command


@given(commands, st.data())
def test_rendered_commands_parse_back_whatever_the_whitespace(command: Command, data: st.DataObject) -> None:
    spaces = st.lists(WHITESPACE, min_size=1, max_size=3).map("".join)
    text = data.draw(spaces | st.just(""))
    for word in command_words(command):
        text += word + data.draw(spaces)
    assert parse_command(text) == command


def test_a_false_option_renders_as_absent() -> None:
    assert render_command(rollback(options={"wait": False, "deregister": True})) == "workshop --deregister"


def test_render_writes_kubectl_short_names_and_the_namespace() -> None:
    assert (
        render_command(rollback(WEB, 3, dry_run=True, reason="db broke"))
        == 'deploy/web -n shop 3 --dry-run --reason "db broke"'
    )
    assert WEB.display == "deploy/web -n shop"
    assert WORKSHOP.display == "workshop"
    assert render_command(HelpCommand()) == "help"


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("plain", '"plain"'),
        ('say "hi" now', "'say \"hi\" now'"),
        ("a\" b' c", "“a\" b' c”"),
        ("a\" b' c” d", "‘a\" b' c” d’"),
        ('ends with "', "'ends with \"'"),
    ],
)
def test_quote_picks_a_quote_the_text_cannot_close_early(text: str, quoted: str) -> None:
    assert quote(text) == quoted
    assert parse_command(f"workshop --reason {quoted}") == rollback(reason=text)


def test_quote_refuses_text_that_no_quote_can_carry() -> None:
    with pytest.raises(ValueError, match="no quotes can carry"):
        quote("a\" b' c” d’ e")


def test_a_target_ref_has_both_kind_and_namespace_or_neither() -> None:
    with pytest.raises(ValidationError):
        TargetRef(name="web", kind=WorkloadKind.DEPLOYMENT)
    with pytest.raises(ValidationError):
        TargetRef(name="web", namespace="shop")
    assert WEB.is_ad_hoc
    assert not WORKSHOP.is_ad_hoc


# --- backend options ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{}, {"deregister": True}, {"no-wait": True}, {"cluster": "prod", "deregister": True}, {"deregister": False}],
    ids=["none", "deregister", "no-wait", "value-and-flag", "false-flag"],
)
def test_declared_options_pass(options: dict[str, bool | str]) -> None:
    validate_options(rollback(options=options), ECS_OPTIONS)


@pytest.mark.parametrize(
    ("options", "declared", "message"),
    [
        (
            {"force": True},
            ECS_OPTIONS,
            "unknown option `--force` — this target also accepts `--cluster`, `--deregister`, `--no-wait`",
        ),
        ({"force": True}, (), f"unknown option `--force` — usage: {USAGE}"),
        ({"cluster": True}, ECS_OPTIONS, "`--cluster` needs a value: `--cluster=VALUE`"),
        ({"deregister": "yes"}, ECS_OPTIONS, "`--deregister` takes no value — write just `--deregister`"),
        (
            {"deregister": True, "no-wait": True},
            ECS_OPTIONS,
            "`--deregister` can't be combined with `--no-wait` — pick one",
        ),
    ],
    ids=["unknown", "unknown-no-backend-options", "needs-value", "takes-no-value", "conflict"],
)
def test_undeclared_or_conflicting_options_are_refused(
    options: dict[str, bool | str], declared: tuple[BackendOption, ...], message: str
) -> None:
    with pytest.raises(CommandSyntaxError) as raised:
        validate_options(rollback(options=options), declared)
    assert str(raised.value) == message


# --- auto ---------------------------------------------------------------------------------------------------------


def test_auto_status_and_resume_parse_and_render_back() -> None:
    assert parse_command("auto status") == AutoStatusCommand()
    resume = parse_command("auto resume arn:aws:eks:eu-west-1:1234:cluster/prod")
    assert resume == AutoResumeCommand(context="arn:aws:eks:eu-west-1:1234:cluster/prod")
    for command in (AutoStatusCommand(), resume):
        assert parse_command(render_command(command)) == command


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("auto", "usage: `/rollback auto status` or `/rollback auto resume <context>`"),
        ("auto stop", "`stop` is not an `auto` command — usage:"),
        ("auto resume", "`auto resume` takes one context"),
        ("auto resume a b", "`auto resume` takes one context"),
        ("auto resume -x", "`-x` is not a cluster context or AWS region"),
    ],
)
def test_auto_usage_errors_say_what_to_type(text: str, problem: str) -> None:
    with pytest.raises(CommandSyntaxError) as error:
        parse_command(text)
    assert problem in str(error.value)

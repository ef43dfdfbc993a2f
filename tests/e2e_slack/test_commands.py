"""Slash commands through the HTTP endpoint: answers, refusals, the lock, and Bolt Pitfall C."""

from __future__ import annotations

from sandbox.slack.seed import ALICE, BOB, DAVE, INCIDENT
from tests.e2e_slack.conftest import WAIT, request_messages, request_rollback, wait_for_phase


def _reply_to(fake, user: str, containing: str, ack=None):
    """The answer a user got: the ack itself, a response_url post, or an ephemeral message."""

    def found():
        texts = [r.text + str((r.body or {}).get("blocks", "")) for r in fake.responses("commands", user=user)]
        texts += [e.all_text() for e in fake.ephemerals(user=user)]
        if ack is not None and ack.ephemeral_text:
            texts.append(ack.ephemeral_text + str((ack.json or {}).get("blocks", "")))
        return [text for text in texts if containing in text]

    return fake.wait_for(found, WAIT, description=f"a reply to {user} containing {containing!r}")


def test_second_rollback_of_a_locked_target_says_who_holds_it(slack, fake_slack, bot) -> None:
    first = request_rollback(slack, fake_slack, bot, "workshop", user=ALICE)
    ack = slack.slash_command("workshop 1", user=BOB, channel=INCIDENT)
    assert ack.status == 200
    reply = _reply_to(fake_slack, BOB, "is locked by")
    assert first.operation.id in reply[-1]
    assert "<@U0ALICE>" in reply[-1]
    assert "UTC" in reply[-1]
    assert len(request_messages(fake_slack)) == 1


def test_dry_run_shows_the_preview_and_never_asks_for_approval(slack, fake_slack, bot) -> None:
    ack = slack.slash_command("workshop --dry-run", user=ALICE, channel=INCIDENT)
    assert ack.status == 200
    reply = _reply_to(fake_slack, ALICE, "Dry run")
    assert "ghcr.io/acme/workshop:1.1.0" in reply[-1]
    assert request_messages(fake_slack) == []
    assert bot.store.lock_holder(bot.flow.catalog.get("workshop").lock_key) is None


def test_rolling_back_to_the_current_revision_is_nothing_to_do(slack, fake_slack, bot) -> None:
    slack.slash_command("workshop 2", user=ALICE, channel=INCIDENT)
    _reply_to(fake_slack, ALICE, "already at revision 2")


def test_a_missing_revision_lists_the_revisions_that_exist(slack, fake_slack, bot) -> None:
    slack.slash_command("workshop 7", user=ALICE, channel=INCIDENT)
    reply = _reply_to(fake_slack, ALICE, "Revisions that exist")
    assert "1, 2" in reply[-1]


def test_a_misspelt_target_gets_a_suggestion_in_the_ack(slack, fake_slack, bot) -> None:
    ack = slack.slash_command("worksop 1", user=ALICE, channel=INCIDENT)
    assert ack.status == 200
    reply = _reply_to(fake_slack, ALICE, "did you mean", ack)
    assert "workshop" in reply[-1]


def test_malformed_text_gets_usage_in_the_ack_itself(slack, fake_slack, bot) -> None:
    ack = slack.slash_command('workshop --reason "unclosed', user=ALICE, channel=INCIDENT)
    assert ack.status == 200
    assert ack.ephemeral_text is not None
    assert "Usage" in ack.ephemeral_text


def test_help_lists_the_catalog_targets(slack, fake_slack, bot) -> None:
    ack = slack.slash_command("help", user=DAVE, channel=INCIDENT)
    text = ack.ephemeral_text or ""
    blocks = str((ack.json or {}).get("blocks", ""))
    assert "workshop" in text + blocks
    assert "fluentd" in text + blocks


def test_history_and_status_answer_from_the_backend(slack, fake_slack, bot) -> None:
    slack.slash_command("history workshop", user=DAVE, channel=INCIDENT)
    history = _reply_to(fake_slack, DAVE, "History of workshop")
    assert "ghcr.io/acme/workshop:1.2.0" in history[-1]
    slack.slash_command("status workshop", user=DAVE, channel=INCIDENT)
    _reply_to(fake_slack, DAVE, "at revision 2")


def test_a_command_text_containing_payload_is_not_eaten_by_bolt(slack, fake_slack, bot) -> None:
    # Bolt Pitfall C: any form body with the substring "payload" parsed as {} → 404 "unhandled request".
    request = request_rollback(slack, fake_slack, bot, 'payload-api 1 --reason "payload too large"')
    assert request.operation.target.name == "payload-api"
    assert request.operation.reason == "payload too large"
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    wait_for_phase(fake_slack, request, "succeeded")


def test_bad_or_stale_signatures_are_refused_with_401(slack, fake_slack, bot) -> None:
    assert slack.bad_signature().status == 401
    assert slack.stale(301).status == 401
    assert slack.future(301).status == 401
    assert slack.missing_headers().status == 401
    assert not slack.non_integer_timestamp().ok
    assert request_messages(fake_slack) == []

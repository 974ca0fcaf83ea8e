"""Feedback: what a clinician did with a card, read so that only the coded reasons travel
on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from medserve.errors import DataError
from medserve.interop.cds_hooks.feedback import MAX_FEEDBACK_ITEMS, parse_feedback

CARD = "4e0a3a1e-3283-4575-ab82-028d55fe2719"
COMMENT = "Patient Jane Doe (MRN 12345) already on metformin"


def item(**changes) -> dict:
    sent = {
        "card": CARD,
        "outcome": "overridden",
        "overrideReason": {
            "reason": {
                "code": "already-addressed",
                "system": "https://medserve.example.org/cds-hooks/override-reason",
                "display": "Risk already known and addressed",
            },
            "userComment": COMMENT,
        },
        "outcomeTimestamp": "2026-12-01T10:05:31.52Z",
    }
    sent.update(changes)
    return {key: value for key, value in sent.items() if value is not None}


def test_an_override_gives_its_coded_reason_and_only_says_a_comment_was_given():
    (parsed,) = parse_feedback({"feedback": [item()]})
    assert parsed.card == CARD and parsed.outcome == "overridden"
    assert parsed.outcomeTimestamp == datetime(2026, 12, 1, 10, 5, 31, 520000, tzinfo=UTC)
    assert parsed.reason_codes() == [
        {
            "system": "https://medserve.example.org/cds-hooks/override-reason",
            "code": "already-addressed",
            "display": "Risk already known and addressed",
        }
    ]
    assert parsed.comment_given
    assert COMMENT not in repr(parsed)
    assert COMMENT not in str(parsed.reason_codes())


def test_a_comment_without_a_reason_gives_no_codes():
    (parsed,) = parse_feedback({"feedback": [item(overrideReason={"userComment": COMMENT})]})
    assert parsed.reason_codes() == [] and parsed.comment_given


def test_an_override_without_reason_or_comment():
    (parsed,) = parse_feedback({"feedback": [item(overrideReason=None)]})
    assert parsed.reason_codes() == [] and not parsed.comment_given
    (blank,) = parse_feedback({"feedback": [item(overrideReason={"userComment": "  "})]})
    assert not blank.comment_given


def test_a_reason_without_display_keeps_system_and_code():
    reason = {"reason": {"code": "d7ecf885", "system": "https://example.com/r"}}
    (parsed,) = parse_feedback({"feedback": [item(overrideReason=reason)]})
    assert parsed.reason_codes() == [{"system": "https://example.com/r", "code": "d7ecf885"}]


def test_accepted_with_its_suggestions_and_several_items_in_one_post():
    accepted = item(outcome="accepted", overrideReason=None, acceptedSuggestions=[{"id": "s1"}])
    parsed = parse_feedback({"feedback": [accepted, item(card="other")]})
    assert [(p.card, p.outcome) for p in parsed] == [(CARD, "accepted"), ("other", "overridden")]
    assert parsed[0].acceptedSuggestions[0].id == "s1"


def test_a_time_zone_other_than_utc_is_kept_as_the_same_instant():
    (parsed,) = parse_feedback({"feedback": [item(outcomeTimestamp="2026-12-01T12:05:31+02:00")]})
    assert parsed.outcomeTimestamp == datetime(
        2026, 12, 1, 10, 5, 31, tzinfo=timezone(timedelta(hours=0))
    )


def test_an_empty_list_is_nothing_to_store():
    assert parse_feedback({"feedback": []}) == []


@pytest.mark.parametrize(
    ("sent", "named"),
    [
        ([item()], "must be a JSON object"),
        ({}, "feedback is required"),
        ({"feedback": item()}, "feedback"),
        ({"feedback": [item(card=None)]}, r"feedback\[0\].card is required"),
        ({"feedback": [item(card="")]}, r"feedback\[0\].card"),
        ({"feedback": [item(outcome="ignored")]}, r"feedback\[0\].outcome: Input should be"),
        ({"feedback": [item(outcomeTimestamp=None)]}, r"outcomeTimestamp is required"),
        ({"feedback": [item(outcomeTimestamp="2026-12-01T10:05:31")]}, "timezone"),
        ({"feedback": [item(outcomeTimestamp="yesterday")]}, "outcomeTimestamp"),
        ({"feedback": [item(outcome="accepted", overrideReason=None)]}, "acceptedSuggestions"),
        (
            {"feedback": [item(overrideReason={"reason": {"code": "x"}})]},
            r"feedback\[0\].overrideReason.reason.system is required",
        ),
        ({"feedback": [item(), item(card=5)]}, r"feedback\[1\].card"),
    ],
)
def test_malformed_feedback_is_refused_naming_the_field(sent, named):
    with pytest.raises(DataError, match=named) as raised:
        parse_feedback(sent)
    message = str(raised.value)
    assert "\n" not in message and COMMENT not in message


def test_more_outcomes_than_one_post_may_carry_are_refused():
    item = {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-12-01T10:00:00Z"}
    with pytest.raises(DataError, match="feedback"):
        parse_feedback({"feedback": [item] * (MAX_FEEDBACK_ITEMS + 1)})

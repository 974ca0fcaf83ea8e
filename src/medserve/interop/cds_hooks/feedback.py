"""CDS Hooks feedback: what the clinician did with a card, as the EHR POSTs it to
``{base}/cds-services/{id}/feedback``.

Each item names the card (its ``uuid``), the outcome (``accepted`` or ``overridden``), the
accepted suggestions or the override reason, and when it happened. Monitoring keeps the
outcome and the coded reason against the card's prediction; the clinician's free-text
comment is read only to know that one was given, never kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from medserve.errors import DataError
from medserve.interop.cds_hooks.request import describe_validation_error


class Coding(BaseModel):
    """A CDS Hooks Coding: a code in a code system, with an optional display."""

    model_config = ConfigDict(extra="allow", frozen=True)

    code: str = Field(min_length=1)
    system: str = Field(min_length=1)
    display: str | None = None


class OverrideReason(BaseModel):
    """Why a card was overridden: the reason the clinician picked from the card's
    ``overrideReasons`` and/or a free-text comment. The comment may hold patient details:
    it is left out of the repr and of everything this module hands on."""

    model_config = ConfigDict(extra="allow", frozen=True)

    reason: Coding | None = None
    userComment: str | None = Field(default=None, repr=False)


class AcceptedSuggestion(BaseModel):
    """A suggestion of the card that the clinician accepted, by its ``uuid``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1)


class FeedbackItem(BaseModel):
    """One outcome for one card. ``outcomeTimestamp`` must carry a time zone (the spec:
    UTC, RFC 3339); ``acceptedSuggestions`` is required when the outcome is accepted."""

    model_config = ConfigDict(extra="allow", frozen=True)

    card: str = Field(min_length=1)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: AwareDatetime

    @model_validator(mode="after")
    def _accepted_names_suggestions(self) -> FeedbackItem:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is required when the outcome is accepted")
        return self

    def reason_codes(self) -> list[dict]:
        """The coded override reason, as ``[{"system", "code", "display"?}]`` (empty when
        none was picked): what may be stored and counted. Never the ``userComment``,
        which is free text and may name the patient or their history."""
        reason = self.overrideReason.reason if self.overrideReason is not None else None
        if reason is None:
            return []
        coded = {"system": reason.system, "code": reason.code}
        if reason.display:
            coded["display"] = reason.display
        return [coded]

    @property
    def comment_given(self) -> bool:
        """Whether the clinician wrote a comment (its text is not handed on)."""
        comment = self.overrideReason.userComment if self.overrideReason is not None else None
        return bool(comment and comment.strip())


# The most outcomes one feedback POST may carry (a clinician's session sends a handful).
MAX_FEEDBACK_ITEMS = 1000


class _FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    feedback: list[FeedbackItem] = Field(max_length=MAX_FEEDBACK_ITEMS)


def parse_feedback(body: object) -> list[FeedbackItem]:
    """The outcomes in a feedback POST (``{"feedback": [...]}``), or a DataError (422)
    naming the first field that is wrong, e.g. ``feedback[0].outcome``."""
    if not isinstance(body, Mapping):
        raise DataError('the feedback must be a JSON object: {"feedback": [...]}')
    try:
        return _FeedbackBody.model_validate(body).feedback
    except ValidationError as error:
        raise DataError(describe_validation_error(error, "the feedback")) from None

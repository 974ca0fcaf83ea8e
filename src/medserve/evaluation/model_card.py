"""Intended use and limitations: from ``--intended-use`` text or a model-card YAML file.

A model card is a small YAML (or JSON) mapping; unknown keys are refused so a typo is not
silently dropped from a report that is shared widely::

    intended_use: Flag adults with chest pain for cardiology review.
    intended_users: Emergency department clinicians.
    out_of_scope: Children; screening of people without symptoms.
    limitations:
      - Trained on four sites from 1988; not validated since.
    contact: cardio-analytics@example.org

The other keys answer the TRIPOD+AI items that people write (``evaluation.tripod``), each
named after its item: ``title`` (1), ``abstract`` (2), ``background`` (3a),
``health_inequalities`` (3c), ``objectives`` (4), ``participants`` (6),
``outcome_assessors`` (8b), ``outcome_blinding`` (8c), ``ethics_approval`` (17), ``funding``
(18a), ``conflicts_of_interest`` (18b), ``protocol`` (18c), ``registration`` (18d),
``data_availability`` (18e), ``code_availability`` (18f), ``patient_public_involvement``
(19), ``interpretation`` (25), ``user_interaction`` (27b) and ``next_steps`` (27c);
``intended_use`` answers 3b and ``limitations`` 26. An item that does not apply can say
so: ``outcome_blinding: not applicable``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from medserve.errors import ConfigError, Location, option

NOT_SUPPLIED = "Intended use: not supplied (pass --intended-use or --model-card)"


class _UseFields(BaseModel):
    """What the model is for, for whom, and where it must not be used."""

    model_config = ConfigDict(extra="forbid")

    intended_use: str | None = None
    intended_users: str | None = None
    out_of_scope: str | None = None
    limitations: list[str] = []
    contact: str | None = None

    @field_validator("limitations", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class ModelCard(_UseFields):
    """What the model is for, for whom and where it must not be used, and the TRIPOD+AI
    items that people write (each key named after its item; ``evaluation.tripod`` says
    which key answers which item)."""

    title: str | None = None
    abstract: str | None = None
    background: str | None = None
    health_inequalities: str | None = None
    objectives: str | None = None
    participants: str | None = None
    outcome_assessors: str | None = None
    outcome_blinding: str | None = None
    ethics_approval: str | None = None
    funding: str | None = None
    conflicts_of_interest: str | None = None
    protocol: str | None = None
    registration: str | None = None
    data_availability: str | None = None
    code_availability: str | None = None
    patient_public_involvement: str | None = None
    interpretation: str | None = None
    user_interaction: str | None = None
    next_steps: str | None = None

    def written(self, key: str) -> str | None:
        """The card's text for a TRIPOD+AI key, stripped; None when not supplied."""
        value = getattr(self, key)
        return (value.strip() or None) if isinstance(value, str) else None


class IntendedUse(_UseFields):
    """The report's intended-use section: the model card's intended-use fields, whether one
    was supplied and from where, and the sentence the report shows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    supplied: bool = False
    source: str | None = None
    statement: str = NOT_SUPPLIED


def _card_error(path: Path, problem: str) -> ConfigError:
    return ConfigError(
        f"model card {path} ({option('model_card')}): {problem}",
        location=Location(file=str(path)),
    )


def read_model_card(path: Path) -> ModelCard:
    """The model card in ``path``, or ConfigError saying what is wrong with the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _card_error(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise _card_error(path, f"cannot be read ({error})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise _card_error(path, f"not valid YAML{line} ({problem})") from None
    if not isinstance(document, dict):
        raise _card_error(path, "expected a mapping of keys such as intended_use and limitations")
    try:
        return ModelCard.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        allowed = ", ".join(ModelCard.model_fields)
        if first["type"] == "extra_forbidden":
            raise _card_error(path, f"unknown key '{key}'; the keys are {allowed}") from None
        raise _card_error(path, f"'{key}': {first['msg']}") from None


def intended_use_section(
    card: ModelCard | None, text: str | None, card_name: str | None = None
) -> IntendedUse:
    """The report's intended-use section; ``--intended-use`` text overrides the card's."""
    card = card or ModelCard()
    if text:
        card = card.model_copy(update={"intended_use": text.strip()})
    sources = [f"model card {card_name}"] if card_name else []
    if text:
        sources.append("--intended-use")
    return IntendedUse(
        **card.model_dump(include=set(_UseFields.model_fields)),
        supplied=bool(card.intended_use),
        source=" and ".join(sources) or None,
        statement=card.intended_use or NOT_SUPPLIED,
    )

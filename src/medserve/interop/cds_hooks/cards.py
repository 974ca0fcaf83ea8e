"""CDS Hooks cards: a model's risk for the patient in context, as the clinician reads it
inside the EHR, and a checker for what the spec requires of a card.

A card says the risk (as a percentage) and its band in a summary under 140 characters,
carries an ``indicator`` from the same bands every channel uses (lowest band ``info``,
highest ``critical``), explains the top factors in markdown under their clinical labels,
and names its source with a link to the model's report. The spec forbids null and empty
members, so every builder here passes through ``without_empty``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from medserve.core.documents import empty_members, without_empty
from medserve.core.risk import band_level
from medserve.errors import ConfigError

if TYPE_CHECKING:
    from medserve.explain.summary import Factor

INDICATORS = ("info", "warning", "critical")
# The spec: "One-sentence, <140-character summary message".
SUMMARY_LIMIT = 140
SELECTION_BEHAVIORS = ("at-most-one", "any")
LINK_TYPES = ("absolute", "smart")
ACTION_TYPES = ("create", "update", "delete")
# Reasons a clinician may pick when dismissing a risk card (the spec prescribes no set;
# the service must give each a display). Coded, so feedback can be counted per reason.
OVERRIDE_REASONS = (
    ("not-relevant", "Not relevant to this patient now"),
    ("already-addressed", "Risk already known and addressed"),
    ("data-incorrect", "The record's data are wrong or out of date"),
    ("disagree", "Disagree with the estimate"),
)
# Markdown that could turn a value or label into a link, an image, HTML or formatting.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~#!])")


_INDICATOR_OF = {"low": "info", "moderate": "warning", "high": "critical"}


def indicator_for(band_index: int, n_bands: int) -> str:
    """The card's urgency from the risk's band: the lowest band ``info``, the highest
    ``critical`` (with the default bands, at or above the model's threshold), any band
    between ``warning``. A model with a single band only informs."""
    try:
        level = band_level(band_index, n_bands)
    except ValueError:
        raise ConfigError(
            f"risk band {band_index} is not one of the model's {n_bands} bands"
        ) from None
    return _INDICATOR_OF[level]


def percent(risk: float) -> str:
    """A risk as a clinician reads it: "42%", "4%", "0.4%", "<0.1%", ">99%"."""
    shown = 100 * float(risk)
    if shown < 0.1:
        return "<0.1%"
    if shown < 1:
        return f"{shown:.1f}%"
    if shown > 99:
        return ">99%"
    return f"{shown:.0f}%"


def risk_card(
    *,
    risk: float,
    band: str,
    band_index: int,
    n_bands: int,
    threshold: float,
    model: str,
    version: int,
    model_title: str,
    raising: Sequence[Factor],
    lowering: Sequence[Factor],
    missing: Mapping[str, str],
    report_url: str | None,
    source_label: str = "medserve",
    card_uuid: str | None = None,
    topic: Mapping[str, str] | None = None,
    override_reasons: Sequence[Mapping[str, str]] | None = None,
) -> dict:
    """The card for one patient's risk: e.g. summary "Diabetes risk 42% (high) — medserve
    diabetes v3", indicator from the band, markdown detail with the risk, band, threshold,
    the inputs that raised and lowered it (``Factor.shown``: clinical label, value, unit)
    and the inputs that were missing (``missing``: label → why), and source with a link to
    the model's report. ``missing`` names inputs only; their values never appear. No
    suggestions or links: a risk estimate proposes no order. ``override_reasons`` (Codings
    with a display, e.g. from ``override_reasons``) lets the EHR offer coded reasons."""
    card = {
        "uuid": card_uuid or str(uuid.uuid4()),
        "summary": summary(
            risk=risk,
            band=band,
            model_title=model_title,
            provenance=f"{source_label} {model} v{version}",
        ),
        "indicator": indicator_for(band_index, n_bands),
        "detail": detail(
            risk=risk,
            band=band,
            threshold=threshold,
            model=model,
            version=version,
            raising=raising,
            lowering=lowering,
            missing=missing,
        ),
        "source": {"label": source_label, "url": report_url, "topic": dict(topic or {})},
        "overrideReasons": [dict(reason) for reason in override_reasons or ()],
    }
    return without_empty(card)


def summary(*, risk: float, band: str, model_title: str, provenance: str) -> str:
    """The summary line, e.g. "Diabetes risk 42% (high) — medserve diabetes v3" ("risk"
    said once: the title "Diabetes risk" reads the same), under SUMMARY_LIMIT characters:
    a long title is shortened first, then the provenance dropped (the source names it),
    so the risk and band always show."""
    limit = SUMMARY_LIMIT - 1
    title = " ".join(model_title.split())
    shown = f"{percent(risk)} ({' '.join(band.split())})"
    if not title.lower().endswith("risk"):
        title = f"{title} risk" if title else "Risk"
    for tail in (f" — {' '.join(provenance.split())}", ""):
        room = limit - len(shown) - len(tail) - 1
        if len(title) <= room:
            return f"{title} {shown}{tail}"
        if room >= 17:
            # Shortened, the title keeps saying what the number is.
            return f"{title[: room - 7].rstrip()}… risk {shown}{tail}"
    text = f"{title} {shown}"
    return text if len(text) <= limit else f"{text[: limit - 1].rstrip()}…"


def detail(
    *,
    risk: float,
    band: str,
    threshold: float,
    model: str,
    version: int,
    raising: Sequence[Factor],
    lowering: Sequence[Factor],
    missing: Mapping[str, str],
) -> str:
    """The card's GitHub-flavoured markdown. Labels, values and reasons are escaped, so
    nothing in a record or a schema can become a link, an image or HTML."""
    lines = [
        f"**Risk {percent(risk)}** — band **{_md(band)}**.",
        "",
        f"The model's threshold is {percent(threshold)}: at or above it, the model "
        "flags the patient.",
    ]
    for heading, factors in (("Raised by:", raising), ("Lowered by:", lowering)):
        if factors:
            lines += ["", f"**{heading}**", *(f"- {_md(factor.shown)}" for factor in factors)]
    if missing:
        lines += ["", "**Missing inputs** (the model read them as not measured):"]
        lines += [f"- {_md(name)}: {_md(why)}" for name, why in missing.items()]
    lines += ["", f"Model: {_md(model)}, version {version}."]
    return "\n".join(lines)


def _md(text: str) -> str:
    """``text`` on one line with markdown's active characters escaped."""
    return _MARKDOWN.sub(r"\\\1", " ".join(str(text).split()))


def override_reasons(system: str) -> list[dict]:
    """OVERRIDE_REASONS as Codings in ``system`` (a URL the deployment owns)."""
    return [
        {"code": code, "system": system, "display": display} for code, display in OVERRIDE_REASONS
    ]


def cards_response(cards: Sequence[dict]) -> dict:
    """The body of a CDS service's answer: ``{"cards": [...]}`` (an empty list when there is
    no advice, as the spec allows)."""
    return {"cards": [without_empty(card) for card in cards]}


# --- conformance -------------------------------------------------------------------------


def card_problems(card: object) -> list[str]:
    """What in ``card`` breaks the spec's Card rules, one line each (empty: none): summary
    required and under 140 characters, indicator one of INDICATORS, source with a label,
    uuid a string, suggestions with a selectionBehavior, links and override reasons
    complete, and no null or empty member anywhere."""
    if not isinstance(card, Mapping):
        return ["a card must be a JSON object"]
    problems = _empty_members(card, "")
    summary_text = card.get("summary")
    if not isinstance(summary_text, str) or not summary_text:
        problems.append("summary is required (a string)")
    elif len(summary_text) >= SUMMARY_LIMIT:
        problems.append(f"summary is {len(summary_text)} characters; it must be under 140")
    if card.get("indicator") not in INDICATORS:
        problems.append(f"indicator is required, one of {', '.join(INDICATORS)}")
    source = card.get("source")
    if not isinstance(source, Mapping) or not isinstance(source.get("label"), str):
        problems.append("source is required, with a label (a string)")
    elif "topic" in source:
        problems += _coding_problems(source["topic"], "source.topic", display_required=False)
    for name in ("uuid", "detail"):
        if name in card and not isinstance(card[name], str):
            problems.append(f"{name} must be a string")
    suggestions = card.get("suggestions")
    if suggestions is not None:
        if card.get("selectionBehavior") not in SELECTION_BEHAVIORS:
            problems.append(
                f"selectionBehavior is required with suggestions, one of "
                f"{', '.join(SELECTION_BEHAVIORS)}"
            )
        for i, suggestion in enumerate(_listed(suggestions, "suggestions", problems)):
            where = f"suggestions[{i}]"
            if not isinstance(suggestion, Mapping) or not isinstance(suggestion.get("label"), str):
                problems.append(f"{where}.label is required (a string)")
                continue
            for j, action in enumerate(_listed(suggestion.get("actions", []), where, problems)):
                problems += action_problems(action, f"{where}.actions[{j}]")
    for i, link in enumerate(_listed(card.get("links", []), "links", problems)):
        problems += _link_problems(link, f"links[{i}]")
    for i, reason in enumerate(
        _listed(card.get("overrideReasons", []), "overrideReasons", problems)
    ):
        problems += _coding_problems(reason, f"overrideReasons[{i}]", display_required=True)
    return problems


def response_problems(response: object) -> list[str]:
    """What in a service's answer breaks the spec: ``cards`` required (an array, which may
    be empty), each card as ``card_problems`` says, each of ``systemActions`` an Action."""
    if not isinstance(response, Mapping):
        return ["the response must be a JSON object"]
    problems: list[str] = []
    cards = response.get("cards")
    if not isinstance(cards, list):
        problems.append("cards is required (an array, empty when there is no advice)")
        cards = []
    for i, card in enumerate(cards):
        problems += [f"cards[{i}]: {problem}" for problem in card_problems(card)]
    if "systemActions" in response:
        for i, action in enumerate(_listed(response["systemActions"], "systemActions", problems)):
            problems += action_problems(action, f"systemActions[{i}]")
    return problems


def action_problems(action: object, where: str = "action") -> list[str]:
    """What breaks the spec's Action rules: type create, update or delete; a description;
    a resource to create or update; no null or empty member."""
    if not isinstance(action, Mapping):
        return [f"{where} must be a JSON object"]
    problems = _empty_members(action, f"{where}.")
    if action.get("type") not in ACTION_TYPES:
        problems.append(f"{where}.type is required, one of {', '.join(ACTION_TYPES)}")
    if not isinstance(action.get("description"), str):
        problems.append(f"{where}.description is required (a string)")
    if action.get("type") in ("create", "update") and not isinstance(
        action.get("resource"), Mapping
    ):
        problems.append(f"{where}.resource is required to {action.get('type')}")
    return problems


def _link_problems(link: object, where: str) -> list[str]:
    if not isinstance(link, Mapping):
        return [f"{where} must be a JSON object"]
    problems = [
        f"{where}.{name} is required (a string)"
        for name in ("label", "url")
        if not isinstance(link.get(name), str)
    ]
    if link.get("type") not in LINK_TYPES:
        problems.append(f"{where}.type is required, one of {', '.join(LINK_TYPES)}")
    elif "appContext" in link and link["type"] != "smart":
        problems.append(f"{where}.appContext is only for smart links")
    return problems


def _coding_problems(coding: object, where: str, *, display_required: bool) -> list[str]:
    if not isinstance(coding, Mapping):
        return [f"{where} must be a Coding (an object with code and system)"]
    names = ("code", "system", "display") if display_required else ("code", "system")
    return [
        f"{where}.{name} is required (a string)"
        for name in names
        if not isinstance(coding.get(name), str)
    ]


def _listed(value: object, where: str, problems: list[str]) -> list:
    if isinstance(value, list):
        return value
    problems.append(f"{where} must be an array")
    return []


def _empty_members(value: object, where: str) -> list[str]:
    """A line for each null or empty member at any depth below ``value``; ``where`` is the
    path to it, ending in "." ("" at the top)."""
    return [
        f"{path.removeprefix('$.')} is null or empty; omit it instead"
        for path in empty_members(value, where.rstrip(".") or "$")
    ]

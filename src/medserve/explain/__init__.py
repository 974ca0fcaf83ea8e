"""Per-prediction explanations on raw input columns, and their aggregates for the report."""

from medserve.explain.explainer import Explainer, Explanations
from medserve.explain.importance import report_section
from medserve.explain.summary import explained, summary_sentence

__all__ = ["Explainer", "Explanations", "explained", "report_section", "summary_sentence"]

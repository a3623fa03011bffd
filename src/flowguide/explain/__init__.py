"""Post-hoc video explainers (papers 002-004) and their metrics."""

from flowguide.explain.core import ExplanationResult, ModuleFn
from flowguide.explain.explainers import (
    DEFAULT_OPTIONS,
    EXPLAINERS,
    explain,
    external_explainer,
    register_explainer,
)
from flowguide.explain.runner import explain_and_score, score_map, summarise
from flowguide.explain.selective import selective_of, selective_relevance

__all__ = [
    "DEFAULT_OPTIONS",
    "EXPLAINERS",
    "ExplanationResult",
    "ModuleFn",
    "explain",
    "explain_and_score",
    "external_explainer",
    "register_explainer",
    "score_map",
    "selective_of",
    "selective_relevance",
    "summarise",
]

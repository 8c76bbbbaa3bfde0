"""What the scorecard notebook and the index show: check rows per category, plotly figures."""

from __future__ import annotations

from typing import Any

import pandas as pd

from opslib.exceptions import BadParameter
from opslib.scorecard.model import Scorecard, stars_text
from opslib.scorecard.rules import CATEGORIES

__all__ = ["category_checks", "stars_figure", "trend_figure"]


def category_checks(card: Scorecard, min_stars: int = 0) -> pd.DataFrame:
    """One check per category: at least ``min_stars`` stars.

    A category that is not assessed is "not run" when ``min_stars`` is 0, and fails otherwise
    (no evidence is below any minimum, as for ``opslib scorecard --min-stars``).

    Args:
        card: The scorecard.
        min_stars: The minimum (0-5); 0 only asks that the category was assessed.

    Returns:
        Columns name (``stars_<category>``), ok (True/False/None), detail.

    Raises:
        BadParameter: ``min_stars`` is not an integer from 0 to 5.
    """
    if isinstance(min_stars, bool) or not isinstance(min_stars, int) or not 0 <= min_stars <= 5:
        raise BadParameter("min_stars", min_stars, "an integer from 0 to 5")
    rows: list[dict[str, object]] = []
    for c in card.categories:
        if c.stars is None:
            runbooks = sorted({e.runbook for r in c.results for e in r.rule.evidence})
            why = (f"no run of {', '.join(runbooks)} for project {card.project!r}" if runbooks
                   else "no opslib runbook assesses this category yet")
            # Like `opslib scorecard --min-stars`: with a minimum, no evidence is below it.
            rows.append({"name": f"stars_{c.key}", "ok": False if min_stars else None,
                         "detail": f"{c.label}: not assessed, {why}"
                                   + (f" (minimum {min_stars} stars)" if min_stars else "")})
            continue
        missing = "; ".join(r.rule.title for r in c.next_missing)
        rows.append({"name": f"stars_{c.key}", "ok": c.stars >= min_stars,
                     "detail": f"{c.label}: {stars_text(c.stars)} ({c.stars} of 5, minimum "
                               f"{min_stars})" + (f"; next star needs: {missing}" if missing
                                                  else "")})
    return pd.DataFrame(rows, columns=["name", "ok", "detail"])


def stars_figure(card: Scorecard) -> Any:
    """Horizontal bars: stars per category (grey 'not assessed' marks where there is none)."""
    import plotly.graph_objects as go

    labels = [c.label for c in card.categories][::-1]
    stars = [c.stars if c.stars is not None else 0 for c in card.categories][::-1]
    text = [stars_text(c.stars) for c in card.categories][::-1]
    colours = ["#afb8c1" if c.stars is None else "#1a7f37" if c.stars >= 4 else
               "#9a6700" if c.stars >= 2 else "#cf222e" for c in card.categories][::-1]
    fig = go.Figure(go.Bar(x=stars, y=labels, orientation="h", text=text,
                           textposition="outside", marker_color=colours))
    fig.update_layout(title=f"5-star scorecard of {card.project!r} (overall "
                            f"{stars_text(card.overall)})", xaxis={"range": [0, 6.5],
                                                                   "dtick": 1},
                      height=420, margin={"l": 150})
    return fig


def trend_figure(trend: pd.DataFrame, project: str) -> Any:
    """Stars over time: overall (thick) and every assessed category."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for key, label in CATEGORIES.items():
        if key in trend and trend[key].notna().any():
            fig.add_scatter(x=trend["as_of"], y=trend[key], name=label, mode="lines+markers",
                            line={"shape": "hv", "width": 1})
    if "overall" in trend:
        fig.add_scatter(x=trend["as_of"], y=trend["overall"], name="overall",
                        mode="lines+markers", line={"shape": "hv", "width": 4})
    fig.update_layout(title=f"Scorecard of {project!r} over time", yaxis={"range": [-0.2, 5.2],
                                                                          "dtick": 1},
                      height=380)
    return fig

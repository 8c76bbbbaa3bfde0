"""Stack overview: one screen with the state of every service of a compose project."""

from __future__ import annotations

from typing import Any

import pandas as pd

from opslib.engine import Client, inspect_facts

__all__ = ["overview_figure", "stack_overview", "unhealthy_services"]

_COLUMNS = [
    "service", "container", "state", "health", "image", "image_size_mb", "user", "runs_as_root",
    "memory_limit_mb", "cpus", "restart_policy", "restart_count", "oom_killed", "read_only",
    "ports",
]


def stack_overview(client: Client, project: str) -> pd.DataFrame:
    """Services of a compose project with state, health, image, size, user, limits and restarts.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.

    Returns:
        One row per container, worst first (not running, then unhealthy, then the rest by
        service). ``memory_limit_mb`` is 0 where no limit is set.

    Raises:
        ProjectNotFound: The project has no containers.
    """
    facts = inspect_facts(client, project)
    df = facts.assign(
        memory_limit_mb=(facts["memory_limit"] / 2**20).round(0).astype(int),
        ports=facts["ports"].map(", ".join),
    )[_COLUMNS]
    rank = df["state"].ne("running").astype(int) * 2 + df["health"].eq("unhealthy").astype(int)
    return (
        df.assign(_rank=rank)
        .sort_values(["_rank", "service"], ascending=[False, True])
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def unhealthy_services(overview: pd.DataFrame) -> list[str]:
    """Services that are not running, or running with a failing or pending health check.

    Args:
        overview: The frame from :func:`stack_overview`.

    Returns:
        Sorted service names.
    """
    bad = overview["state"].ne("running") | overview["health"].isin(["unhealthy", "starting"])
    return sorted(overview.loc[bad, "service"].unique().tolist())


def overview_figure(overview: pd.DataFrame) -> Any:
    """Bar chart per service: image size and memory limit, coloured by health.

    Args:
        overview: The frame from :func:`stack_overview`.

    Returns:
        A plotly Figure.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    colours = {"healthy": "#1a7f37", "none": "#6e7781", "starting": "#bf8700",
               "unhealthy": "#cf222e"}
    bar_colours = [colours.get(h, "#cf222e") if s == "running" else "#cf222e"
                   for h, s in zip(overview["health"], overview["state"], strict=True)]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Image size (MB)",
                                                        "Memory limit (MiB, 0 = none)"))
    fig.add_trace(go.Bar(x=overview["service"], y=overview["image_size_mb"],
                         marker_color=bar_colours, name="image size",
                         hovertext=overview["image"]), row=1, col=1)
    fig.add_trace(go.Bar(x=overview["service"], y=overview["memory_limit_mb"],
                         marker_color=bar_colours, name="memory limit",
                         hovertext=overview["health"]), row=1, col=2)
    fig.update_layout(showlegend=False, height=380, margin={"t": 80, "b": 40},
                      title="Services (green healthy, grey no health check, red failing)")
    return fig

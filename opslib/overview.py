"""Stack overview: one screen with the state of every service of a compose project."""

from __future__ import annotations

from typing import Any

import pandas as pd

from opslib.engine import Client, Stack, inspect_facts, worst_health

__all__ = [
    "health_check",
    "health_states",
    "overview_figure",
    "restart_table",
    "restarts_total",
    "service_roles",
    "services_without_healthcheck",
    "services_without_memory_limit",
    "stack_overview",
    "total_image_size_mb",
    "unhealthy_services",
]

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
        service). ``health`` says it as it is: healthy, unhealthy, starting, no healthcheck or
        not running. ``memory_limit_mb`` is 0 where no limit is set.

    Raises:
        ProjectNotFound: The project has no containers.
    """
    facts = inspect_facts(client, project)
    honest = facts["health"].where(facts["health"] != "none", "no healthcheck").where(
        facts["state"] == "running", "not running")
    df = facts.assign(
        health=honest,
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

    colours = {"healthy": "#1a7f37", "no healthcheck": "#6e7781", "starting": "#bf8700",
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


def services_without_memory_limit(stack: pd.DataFrame) -> list[str]:
    """Services with no memory limit, sorted (from :func:`stack_overview`)."""
    return sorted(stack.loc[stack["memory_limit_mb"] == 0, "service"].unique().tolist())


def total_image_size_mb(stack: pd.DataFrame) -> float:
    """The size of the distinct images the stack runs, in MB."""
    return float(stack.drop_duplicates("image")["image_size_mb"].sum())


def restarts_total(stack: pd.DataFrame) -> int:
    """Restarts of every container of the stack, summed."""
    return int(stack["restart_count"].sum())


def restart_table(stack: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The services that restarted or were OOM-killed (every service when none did), and a
    caption saying which of the two it is."""
    cols = ["service", "restart_count", "oom_killed", "restart_policy"]
    restarted = stack.loc[(stack["restart_count"] > 0) | stack["oom_killed"], cols]
    if len(restarted):
        return restarted, "Services that restarted or were OOM-killed"
    return stack[cols], "No restarts, no OOM kills"


def health_states(stack: pd.DataFrame) -> dict[str, str]:
    """Per service, the worst health of its containers (from :func:`stack_overview`)."""
    return {str(svc): worst_health(group) for svc, group in stack.groupby("service")["health"]}


def services_without_healthcheck(stack: pd.DataFrame) -> list[str]:
    """Running services with no healthcheck, sorted: nothing tells when they fail (§4)."""
    return sorted({str(s) for s, h in zip(stack["service"], stack["health"], strict=True)
                   if h == "no healthcheck"})


def service_roles(stack: Stack) -> dict[str, str]:
    """Per service, the role discovery gave it (postgres, redis, nginx, http, other)."""
    return {s.name: s.role for s in stack.services}


def health_check(stack: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The overview's two checks and the unhealthy services.

    ``all_services_healthy``: no service is not running, unhealthy or starting.
    ``all_services_have_healthcheck``: every service has a healthcheck (checklist §4: without
    one, a hung service looks healthy and ``depends_on: service_healthy`` cannot wait for it).

    Args:
        stack: The frame from :func:`stack_overview`.

    Returns:
        ``(checks frame with name, ok, detail; unhealthy service names)``.
    """
    bad = unhealthy_services(stack)
    none = services_without_healthcheck(stack)
    n = int(stack["service"].nunique())
    return pd.DataFrame([
        ("all_services_healthy", not bad,
         f"{len(bad)} of {n} services not running/healthy: {', '.join(bad) or 'none'}"),
        ("all_services_have_healthcheck", not none,
         f"{len(none)} of {n} services have no healthcheck: {', '.join(none) or 'none'}"),
    ], columns=["name", "ok", "detail"]), bad

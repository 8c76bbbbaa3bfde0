"""Resource tuning: measure what containers use, recommend limits, apply them safely.

The flow of the ``resource-tuning`` runbook (checklist §3):

1. :func:`sample_with_load` samples every container of a compose project
   (:func:`opslib.engine.sample_stats`), optionally while a bounded k6 run loads the demo stack.
2. :func:`current_state` puts the live limits (inspect) next to what the compose file declares and
   flags services without a memory or CPU limit, OOM kills, restarts and CPU throttling.
3. :func:`usage_summary` and :func:`recommend` turn the samples into a memory limit, a memory
   reservation and a CPU limit per service, each with the sentence that explains it;
   :func:`usage_figure` draws usage against the current and recommended limits.
4. :func:`plan_limits` writes a compose override file with ``deploy.resources`` for the services
   that change (the user's compose file is never rewritten); :func:`apply_limits` recreates those
   services one at a time with ``docker compose -f base -f override up -d``, verifies the new
   limits and health, and rolls a service that does not come back healthy to its previous
   settings. Every step is journalled (JSON lines) in the run's output folder.
"""

from __future__ import annotations

from opslib.demo import DEMO_COMPOSE
from opslib.resources.limits import (
    LimitsPlan,
    apply_limits,
    apply_outcome,
    build_override,
    plan_limits,
    read_journal,
    validate_override,
)
from opslib.resources.recommend import (
    REFERENCES,
    Reference,
    readable,
    recommend,
    recommended_values,
    usage_figure,
    usage_summary,
)
from opslib.resources.state import (
    LoadedSample,
    compose_config,
    current_state,
    declared_resources,
    host_cpus,
    oom_killed_services,
    resolve_compose_file,
    restarts_total,
    sample_with_load,
    service_role,
    services_without_limits,
)
from opslib.resources.units import (
    MIB,
    format_cpus,
    format_memory,
    parse_cpus,
    parse_memory,
    round_cpus,
    round_memory,
)

__all__ = [
    "DEMO_COMPOSE",
    "MIB",
    "REFERENCES",
    "LimitsPlan",
    "LoadedSample",
    "Reference",
    "apply_limits",
    "apply_outcome",
    "build_override",
    "compose_config",
    "current_state",
    "declared_resources",
    "format_cpus",
    "format_memory",
    "host_cpus",
    "oom_killed_services",
    "parse_cpus",
    "parse_memory",
    "plan_limits",
    "read_journal",
    "readable",
    "recommend",
    "recommended_values",
    "resolve_compose_file",
    "restarts_total",
    "round_cpus",
    "round_memory",
    "sample_with_load",
    "service_role",
    "services_without_limits",
    "usage_figure",
    "usage_summary",
    "validate_override",
]

"""The ``opslib`` command: run, list, report and schedule runbooks.

::

    opslib run RUNBOOK [-p NAME VALUE]... [--timeout S] [--outputs DIR] [--show-code]
               [--secret NAME]... [--notify URL]... [--project P] [--docker-url U]
    opslib run --all [...]          every runbook in notebooks/, one after the other
    opslib list                     runbooks, one-line descriptions, parameters
    opslib report                   rebuild outputs/index.html
    opslib schedule RUNBOOK --every 1h [-p NAME VALUE]... [--notify URL]

Exit codes of ``run``: 0 every check passed; 1 a cell raised, or bad parameters / unknown runbook
(nothing ran); 2 ran but a check failed; 3 timeout or dead kernel. ``--all`` exits with the worst
code, ordered 3 > 1 > 2 > 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opslib.exceptions import BadParameter, OpslibError
from opslib.redact import redact_text
from opslib.scorecard import SCORECARD_RUNBOOK

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``opslib``."""
    parser = argparse.ArgumentParser(
        prog="opslib", description="Run Jupyter runbooks headless and keep their reports.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit codes of 'run': 0 passed, 1 a cell raised or bad input (nothing ran), "
               "2 a check failed, 3 timeout or dead kernel; --all: worst of 3 > 1 > 2 > 0.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                       metavar=("NAME", "VALUE"),
                       help="set a parameter (converted to the type of its default); "
                            "VALUE 'env:VAR' reads $VAR and treats it as a secret")
        p.add_argument("--project", help="compose project, for every runbook that has 'project'")
        p.add_argument("--docker-url", help="Docker engine URL, for runbooks with 'docker_url'")
        p.add_argument("--secret", action="append", default=[], metavar="NAME",
                       help="treat this parameter's value as a secret (never written anywhere)")
        p.add_argument("--timeout", type=float, help="limit of each whole run, in seconds")
        p.add_argument("--outputs", type=Path, help="run folders root (default <repo>/outputs)")
        p.add_argument("--notify", action="append", default=[], metavar="URL",
                       help="apprise URL told about runs exiting 1-3 (json://, mailto://, ...)")
        p.add_argument("--show-code", action="store_true", help="show code cells in the report")
        p.add_argument("--notebooks", type=Path, help="runbook folder (default <repo>/notebooks)")

    run = sub.add_parser("run", help="run one runbook (or --all) and write its report")
    run.add_argument("runbook", nargs="?", help="runbook name in notebooks/, or an .ipynb path")
    run.add_argument("--all", action="store_true", help="run every runbook, one after the other")
    common(run)

    lst = sub.add_parser("list", help="list runbooks with description and parameters")
    lst.add_argument("--notebooks", type=Path, help="runbook folder (default <repo>/notebooks)")

    rep = sub.add_parser("report", help="rebuild outputs/index.html from every run")
    rep.add_argument("--outputs", type=Path, help="run folders root (default <repo>/outputs)")

    card = sub.add_parser("scorecard", help="the 5-star scorecard of a project, from its runs",
                          description="Compute the checklist's 5-star scorecard from the run "
                          "history. Exit 2 when --min-stars is given and a category is below it "
                          "(a category not assessed is below any minimum).")
    card.add_argument("--project", help="compose project (default: every project in the history)")
    card.add_argument("--outputs", type=Path, help="run folders root (default <repo>/outputs)")
    card.add_argument("--min-stars", type=int, default=0, metavar="N",
                      help="exit 2 when a category has fewer than N stars (0-5)")
    card.add_argument("--freshness-days", type=float, default=30.0, metavar="DAYS",
                      help="evidence older than this stops counting (default 30)")
    card.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sch = sub.add_parser("schedule", help="print a crontab line and systemd units for a runbook")
    sch.add_argument("runbook", help="runbook name in notebooks/, or an .ipynb path")
    sch.add_argument("--every", required=True, help="interval: 15m, 30m, 1h, 6h, 1d ...")
    common(sch)
    return parser


def _parameters(args: argparse.Namespace, specs: Sequence[Any]) -> dict[str, str]:
    names = {s.name for s in specs}
    params = {}
    if args.project is not None and "project" in names:
        params["project"] = args.project
    if args.docker_url is not None and "docker_url" in names:
        params["docker_url"] = args.docker_url
    params.update(dict(args.parameter))
    return params


def _line(result: Any) -> str:
    return (f"{result.runbook:<24} {result.status:<13} exit={result.exit_code} "
            f"{result.duration_s:7.1f}s  {result.report_path}")


def _cmd_run(args: argparse.Namespace) -> int:
    from opslib.runbook import runner, schedule

    if bool(args.all) == bool(args.runbook):
        raise BadParameter("runbook", args.runbook, "either a runbook name or --all")
    if args.notify:
        schedule.validate_notify_urls(args.notify)
    if args.all:
        # The scorecard reads the other runs' evidence, so it runs after them.
        infos = sorted(runner.list_runbooks(args.notebooks),
                       key=lambda i: i.name == SCORECARD_RUNBOOK)
        if not infos:
            raise BadParameter("--all", str(args.notebooks or "notebooks/"), "a folder holding "
                               "runbook notebooks")
        known = {s.name for i in infos for s in i.params}
        for name, value in args.parameter:
            if name not in known:
                raise BadParameter(name, value, "a parameter of at least one runbook",
                                   sorted(known))
        plan = []
        for info in infos:  # validate everything before running anything
            names = {s.name for s in info.params}
            params = {k: v for k, v in _parameters(args, info.params).items() if k in names}
            secrets = [s for s in args.secret if s in names]
            runner.validate_parameters(info.params, params, secrets, notebook=info.path.name)
            plan.append((info.path, params, secrets))
    else:
        path = runner.resolve_runbook(args.runbook, args.notebooks)
        specs = runner.inspect_parameters(path)
        plan = [(path, _parameters(args, specs), list(args.secret))]
    codes = []
    for path, params, secrets in plan:
        result = runner.run_runbook(path, params, outputs_dir=args.outputs, timeout=args.timeout,
                                    secrets=secrets, show_code=args.show_code)
        print(_line(result), flush=True)
        if result.exit_code:
            print(f"opslib: {result.runbook}: {result.exit_reason}", file=sys.stderr)
        if args.notify and not schedule.notify_failure(args.notify, result):
            print(f"opslib: warning: could not deliver the notification for {result.runbook}",
                  file=sys.stderr)
        codes.append(result.exit_code)
    return runner.worst_exit_code(codes)


def _cmd_list(args: argparse.Namespace) -> int:
    from opslib.runbook import runner

    infos = runner.list_runbooks(args.notebooks)
    if not infos:
        print("(no runbooks found)")
    for info in infos:
        print(f"{info.name:<24} {info.description or info.title}")
        for spec in info.params:
            print(f"    {spec.describe()}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from opslib.runbook import htmlreport, runner

    outputs = args.outputs or runner.find_root() / "outputs"
    path = htmlreport.write_index(outputs)
    print(path)
    return 0


def _cmd_scorecard(args: argparse.Namespace) -> int:
    import json

    from opslib import scorecard
    from opslib.runbook import runner

    if not 0 <= args.min_stars <= 5:
        raise BadParameter("--min-stars", args.min_stars, "an integer from 0 to 5")
    outputs = args.outputs or runner.find_root() / "outputs"
    history = scorecard.load_history(outputs)
    projects = [args.project] if args.project else scorecard.projects_in(history)
    if not projects:
        raise BadParameter("--outputs", str(outputs), "a folder holding runs (opslib run ...)")
    code, out = 0, []
    for project in projects:
        card = scorecard.compute_scorecard(history, project, freshness_days=args.freshness_days)
        below = card.below(args.min_stars) if args.min_stars else []
        code = 2 if below else code
        if args.json:
            out.append({**card.to_dict(), "below_min_stars": [c.key for c in below]})
            continue
        print(f"{project}: overall {scorecard.stars_text(card.overall)} "
              f"({len(card.assessed)} of {len(card.categories)} categories assessed, "
              f"{card.runs_used} runs, proofs count {card.freshness_days:g} days)")
        print(card.table().to_string(index=False))
        for c in below:
            print(f"opslib: {project}: {c.label} is {scorecard.stars_text(c.stars)}, below "
                  f"{args.min_stars} stars", file=sys.stderr)
    if args.json:
        print(json.dumps(out if len(out) > 1 else out[0], indent=2))
    return code


def _cmd_schedule(args: argparse.Namespace) -> int:
    from opslib.runbook import runner, schedule

    interval = schedule.parse_every(args.every)
    path = runner.resolve_runbook(args.runbook, args.notebooks)
    specs = runner.inspect_parameters(path)
    params = _parameters(args, specs)
    runner.validate_parameters(specs, {k: v for k, v in params.items()
                                       if not v.startswith("env:")}, args.secret,
                               notebook=path.name)
    unknown = set(params) - {s.name for s in specs}
    if unknown:
        runner.validate_parameters(specs, {n: params[n] for n in unknown}, notebook=path.name)
    if args.notify:
        schedule.validate_notify_urls(args.notify)
    root = runner.find_root()
    outputs = args.outputs or root / "outputs"
    argv = schedule.opslib_command(
        path, list(params.items()), outputs_dir=outputs,
        timeout=args.timeout or max(interval.seconds - 60, 60), notify=args.notify,
        secrets=args.secret, show_code=args.show_code)
    print(schedule.render_schedule(path.stem, interval, argv, root, outputs), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``opslib`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    handler = {"run": _cmd_run, "list": _cmd_list, "report": _cmd_report,
               "schedule": _cmd_schedule, "scorecard": _cmd_scorecard}[args.command]
    try:
        return handler(args)
    except BadParameter as exc:
        tail = "\nNothing was run." if args.command == "run" else ""
        print(f"opslib: error: {redact_text(str(exc))}{tail}", file=sys.stderr)
        return 1
    except OpslibError as exc:
        print(f"opslib: error: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("opslib: interrupted", file=sys.stderr)
        return 130

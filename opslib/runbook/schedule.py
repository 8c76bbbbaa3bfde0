"""Scheduling without a daemon of our own: crontab and systemd timer text, and failure notices.

``opslib schedule RUNBOOK --every 1h`` prints a crontab line and a systemd ``.service`` + ``.timer``
pair that call ``opslib run`` with absolute paths; the operator installs whichever the host uses.
``opslib run --notify URL`` sends a message through apprise (mail, Slack, Teams, ntfy, a JSON
webhook...) when a run exits with 1-3.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opslib.exceptions import BadParameter
from opslib.redact import looks_secret_name, redact_text

__all__ = ["Interval", "crontab_line", "notify_failure", "opslib_command", "parse_every",
           "render_schedule", "systemd_units", "validate_notify_urls"]

_EVERY = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")


@dataclass(frozen=True)
class Interval:
    """A schedule interval.

    Attributes:
        amount: How many units.
        unit: ``m`` (minutes), ``h`` (hours) or ``d`` (days).
    """

    amount: int
    unit: str

    @property
    def seconds(self) -> int:
        """The interval in seconds."""
        return self.amount * {"m": 60, "h": 3600, "d": 86400}[self.unit]

    @property
    def cron(self) -> str:
        """The five cron time fields."""
        n = self.amount
        if self.unit == "m":
            return "* * * * *" if n == 1 else f"*/{n} * * * *"
        if self.unit == "h":
            return "0 * * * *" if n == 1 else f"0 */{n} * * *"
        return "0 0 * * *" if n == 1 else f"0 0 */{n} * *"

    @property
    def on_calendar(self) -> str:
        """The same times as a systemd ``OnCalendar=`` expression."""
        n = self.amount
        if self.unit == "m":
            return "*-*-* *:*:00" if n == 1 else f"*-*-* *:00/{n}:00"
        if self.unit == "h":
            return "*-*-* *:00:00" if n == 1 else f"*-*-* 00/{n}:00:00"
        return "*-*-* 00:00:00" if n == 1 else f"*-*-01/{n} 00:00:00"

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


def parse_every(text: str) -> Interval:
    """Parse ``30m``, ``1h``, ``6h``, ``1d``.

    Minutes must divide 60 and hours 24, so cron and systemd fire at the same, evenly spaced
    times; days restart counting on the 1st of each month (``*/N`` day of month).

    Raises:
        BadParameter: Anything else.
    """
    m = _EVERY.match(text or "")
    expected = ("an interval like 15m, 30m, 1h, 6h, 1d (minutes dividing 60, hours dividing 24, "
                "days 1-31)")
    if not m:
        raise BadParameter("every", text, expected)
    amount, unit = int(m.group(1)), m.group(2)
    ok = {"m": amount >= 1 and 60 % amount == 0 and amount < 60,
          "h": amount >= 1 and 24 % amount == 0 and amount < 24,
          "d": 1 <= amount <= 31}[unit]
    if unit == "m" and amount == 60:
        return Interval(1, "h")
    if unit == "h" and amount == 24:
        return Interval(1, "d")
    if not ok:
        raise BadParameter("every", text, expected)
    return Interval(amount, unit)


def opslib_command(
    notebook: Path,
    parameters: Sequence[tuple[str, str]] = (),
    *,
    outputs_dir: Path,
    timeout: float | None = None,
    notify: Sequence[str] = (),
    secrets: Sequence[str] = (),
    show_code: bool = False,
) -> list[str]:
    """The ``opslib run`` argv with absolute paths (console script next to this Python).

    Raises:
        BadParameter: A secret parameter is given literally: a schedule must not hold it; pass
            ``env:VAR`` and set VAR in the environment of cron / the systemd unit.
    """
    secret_names = set(secrets)
    for name, value in parameters:
        if (looks_secret_name(name) or name in secret_names) and not value.startswith("env:"):
            raise BadParameter(name, "***", "env:VARIABLE for a secret in a schedule (the value "
                               "is then read from the environment of cron / the systemd unit)")
    script = Path(sys.executable).parent / "opslib"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "opslib"]
    argv = [*base, "run", str(notebook.resolve()), "--outputs", str(outputs_dir.resolve())]
    if timeout:
        argv += ["--timeout", f"{timeout:g}"]
    for name, value in parameters:
        argv += ["-p", name, value]
    for name in secrets:
        argv += ["--secret", name]
    for url in notify:
        argv += ["--notify", url]
    if show_code:
        argv.append("--show-code")
    return argv


def crontab_line(interval: Interval, argv: Sequence[str], workdir: Path, log: Path) -> str:
    """One crontab line (``%`` escaped, as cron requires)."""
    cmd = (f"cd {shlex.quote(str(workdir))} && {shlex.join(argv)} "
           f">> {shlex.quote(str(log))} 2>&1")
    return f"{interval.cron} {cmd.replace('%', chr(92) + '%')}"


def _systemd_arg(arg: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", arg):
        quoted = arg
    else:
        quoted = '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return quoted.replace("%", "%%").replace("$", "$$")


def systemd_units(
    unit: str, runbook: str, interval: Interval, argv: Sequence[str], workdir: Path
) -> tuple[str, str]:
    """The ``<unit>.service`` and ``<unit>.timer`` texts."""
    service = (
        "[Unit]\n"
        f"Description=opslib runbook {runbook}\n"
        "After=network-online.target docker.service\n"
        "Wants=network-online.target\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"WorkingDirectory={_systemd_arg(str(workdir))}\n"
        f"# Secrets given as env:VAR: put VAR=... in this root-only file.\n"
        f"EnvironmentFile=-/etc/opslib/{unit}.env\n"
        f"ExecStart={' '.join(_systemd_arg(a) for a in argv)}\n"
        "# Exit codes: 0 ok, 1 a cell raised, 2 a check failed, 3 timeout or dead kernel.\n"
    )
    timer = (
        "[Unit]\n"
        f"Description=Run opslib runbook {runbook} every {interval}\n\n"
        "[Timer]\n"
        f"OnCalendar={interval.on_calendar}\n"
        "Persistent=true\n"
        f"Unit={unit}.service\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return service, timer


def render_schedule(
    runbook: str, interval: Interval, argv: Sequence[str], workdir: Path, outputs_dir: Path
) -> str:
    """The full text ``opslib schedule`` prints: crontab line, then the systemd pair."""
    unit = "opslib-" + re.sub(r"[^A-Za-z0-9_.-]", "-", runbook)
    log = outputs_dir.resolve() / f"{runbook}-schedule.log"
    service, timer = systemd_units(unit, runbook, interval, argv, workdir)
    return (
        f"# --- cron: add with 'crontab -e' (runs every {interval}) ---\n"
        f"{crontab_line(interval, argv, workdir, log)}\n\n"
        f"# --- systemd: /etc/systemd/system/{unit}.service ---\n{service}\n"
        f"# --- systemd: /etc/systemd/system/{unit}.timer ---\n{timer}\n"
        f"# then: systemctl daemon-reload && systemctl enable --now {unit}.timer\n"
        f"#       systemctl list-timers {unit}.timer; journalctl -u {unit}.service\n"
    )


def validate_notify_urls(urls: Sequence[str]) -> Any:
    """An ``apprise.Apprise`` holding ``urls``.

    Raises:
        BadParameter: apprise does not understand a URL.
    """
    import apprise

    ap = apprise.Apprise()
    for url in urls:
        if not ap.add(url):
            raise BadParameter("notify", redact_text(url), "an apprise URL, e.g. "
                               "json://host:port/path, mailto://user:pass@host, slack://...")
    return ap


def notify_failure(urls: Sequence[str], result: Any) -> bool:
    """Send a message about a failed run (exit code 1-3) to every URL; no-op for exit code 0.

    Args:
        urls: apprise URLs.
        result: A :class:`opslib.runbook.runner.RunResult`.

    Returns:
        True when every notification was delivered (or none was due).
    """
    if not urls or result.exit_code == 0:
        return True
    import apprise

    ap = validate_notify_urls(urls)
    res = result.results
    failed = ", ".join(str(c.get("name")) for c in res.get("failed_checks") or [])
    body = "\n".join(line for line in [
        f"{res.get('runbook')} finished with status {result.status} "
        f"(exit code {result.exit_code}) on {res.get('host')}.",
        f"Reason: {result.exit_reason}",
        f"Failed checks: {failed}" if failed else "",
        f"Started {res.get('started')}, took {float(res.get('duration_s') or 0):.1f} s.",
        f"Report: {result.report_path}",
    ] if line)
    return bool(ap.notify(title=f"opslib: {res.get('runbook')} {result.status}",
                          body=redact_text(body), notify_type=apprise.NotifyType.FAILURE))

"""The one exception hierarchy of opslib.

Every error opslib raises on purpose is an :class:`OpslibError`. Third-party errors (docker-py,
papermill, subprocess) are translated at the boundary with ``raise ... from exc`` so that callers,
notebooks and the CLI only ever need to catch ``OpslibError``. Each class carries the data a caller
needs as attributes, and its message says what to do next.

::

    OpslibError
    ├── EngineUnreachable ........ no Docker engine answers at the URL
    ├── EngineRefused ............ the engine answered an API error (its HTTP status kept)
    ├── NotFound
    │   ├── ProjectNotFound ...... no container carries the compose project label
    │   ├── ServiceNotFound ...... the project has no such service
    │   ├── RoleNotFound ......... discovery found no (or several) postgres/redis/... services
    │   ├── ContainerNotFound .... no container with that name or id
    │   ├── RunbookNotFound ...... no notebook of that name under notebooks/
    │   └── BackupNotFound ....... no backup file / manifest where one was expected
    ├── BadParameter ............. a parameter has the wrong type, value or name
    ├── BadInputFormat ........... a file is malformed, truncated or of the wrong kind
    ├── CommandFailed ............ a command (in a container or on the host) exited non-zero
    ├── ToolMissing .............. an external tool (hadolint, k6, pg_dump ...) is not installed
    ├── PlanError ................ a plan cannot be built or is stale / unsafe to apply
    ├── ApplyError ............... an approved action failed while being applied
    ├── VerificationFailed ....... a check of an artefact failed (checksum, row counts ...)
    └── RunbookError
        ├── RunbookExecutionError  a notebook cell raised during a run
        └── RunbookTimeout ....... a run exceeded its timeout or its kernel died
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ApplyError",
    "BackupNotFound",
    "BadInputFormat",
    "BadParameter",
    "CommandFailed",
    "ContainerNotFound",
    "EngineRefused",
    "EngineUnreachable",
    "NotFound",
    "OpslibError",
    "PlanError",
    "ProjectNotFound",
    "RoleNotFound",
    "RunbookError",
    "RunbookExecutionError",
    "RunbookNotFound",
    "RunbookTimeout",
    "ServiceNotFound",
    "ToolMissing",
    "VerificationFailed",
]


class OpslibError(Exception):
    """Base class of every error opslib raises on purpose."""


class EngineUnreachable(OpslibError):
    """No Docker engine answers.

    Attributes:
        url: The engine URL that was tried (``None`` for the environment default).
        reason: What the client reported.
    """

    def __init__(self, url: str | None, reason: str) -> None:
        self.url = url
        self.reason = reason
        where = url or "DOCKER_HOST / the default socket"
        super().__init__(
            f"No Docker engine answers at {where}: {reason}. Start one with "
            "'scripts/docker-engine.sh' (or 'systemctl start docker'), or set DOCKER_HOST."
        )


class EngineRefused(OpslibError):
    """The Docker engine answered but refused the request (an API error other than 404).

    Attributes:
        status: The HTTP status the engine answered with (``None`` when it gave none).
        explanation: The engine's explanation.
    """

    def __init__(self, status: int | None, explanation: str) -> None:
        self.status = status
        self.explanation = explanation
        super().__init__(f"Docker engine refused the request: {explanation}")


class NotFound(OpslibError):
    """Something that was named does not exist."""


class ProjectNotFound(NotFound):
    """No container carries the compose project label.

    Attributes:
        project: The compose project name that was asked for.
        available: Compose projects that do have containers on the engine.
    """

    def __init__(self, project: str, available: Sequence[str] = ()) -> None:
        self.project = project
        self.available = list(available)
        hint = (
            f"Projects on this engine: {', '.join(self.available)}."
            if self.available
            else "No compose project runs on this engine; start one with 'make demo'."
        )
        super().__init__(f"Compose project {project!r} has no containers. {hint}")


class ServiceNotFound(NotFound):
    """The compose project has no such service (or it has no container).

    Attributes:
        project: The compose project.
        service: The service that was asked for.
        available: The services the project does have.
    """

    def __init__(self, project: str, service: str, available: Sequence[str] = ()) -> None:
        self.project = project
        self.service = service
        self.available = list(available)
        super().__init__(
            f"Service {service!r} not found in compose project {project!r}. "
            f"Its services are: {', '.join(self.available) or '(none)'}."
        )


class RoleNotFound(NotFound):
    """Discovery found no service, or several, for a role a runbook needs (postgres, redis ...).

    Attributes:
        project: The compose project.
        role: The role that was looked for.
        param: The runbook parameter that names the service explicitly.
        services: ``service (detected role)`` for every service of the project.
    """

    def __init__(self, project: str, role: str, why: str, services: str, *, param: str = ""
                 ) -> None:
        self.project = project
        self.role = role
        self.param = param
        self.services = services
        fix = (f" Set the parameter {param} to the service to use (-p {param} <service>)."
               if param else "")
        super().__init__(f"{why} in compose project {project!r}. Its services (detected role): "
                         f"{services}.{fix}")


class ContainerNotFound(NotFound):
    """No container with that name or id.

    Attributes:
        name: The container name or id that was asked for.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"No container named {name!r}. List them with 'docker ps -a'.")


class RunbookNotFound(NotFound):
    """No runbook notebook of that name.

    Attributes:
        name: The runbook asked for.
        available: Runbooks that exist.
    """

    def __init__(self, name: str, available: Sequence[str] = ()) -> None:
        self.name = name
        self.available = list(available)
        super().__init__(
            f"No runbook named {name!r}. Available: {', '.join(self.available) or '(none)'}; "
            "'opslib list' shows them with their parameters."
        )


class BackupNotFound(NotFound):
    """No backup (or no manifest) where one was expected.

    Attributes:
        path: The file or directory that was searched.
    """

    def __init__(self, path: str, detail: str = "") -> None:
        self.path = path
        super().__init__(
            f"No backup found at {path}{': ' + detail if detail else ''}. "
            "Take one first (opslib.backup.take_backup or the restore-drill runbook)."
        )


class BadParameter(OpslibError, ValueError):
    """A parameter has the wrong name, type or value.

    Attributes:
        name: The parameter name.
        value: The value given (already redacted if the name looks secret).
        expected: What was expected, in words (a type name or a range).
        valid: Optional description of the valid parameters, one per item.
    """

    def __init__(
        self, name: str, value: Any, expected: str, valid: Sequence[str] = ()
    ) -> None:
        self.name = name
        self.value = value
        self.expected = expected
        self.valid = list(valid)
        msg = f"Bad parameter {name!r}={value!r}: expected {expected}."
        if self.valid:
            msg += " Valid parameters:\n  " + "\n  ".join(self.valid)
        super().__init__(msg)


class BadInputFormat(OpslibError, ValueError):
    """An input file is malformed, truncated or of the wrong kind.

    Attributes:
        path: The file that was read.
        line: 1-based line number of the problem, when known.
        reason: What is wrong.
    """

    def __init__(self, path: str, reason: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")


class CommandFailed(OpslibError):
    """A command exited non-zero, in a container or on the host.

    Attributes:
        command: The command, as a list of arguments.
        exit_code: Its exit status.
        stderr: The tail of what it printed on stderr (redacted).
        container: The container it ran in, or ``None`` on the host.
    """

    def __init__(
        self,
        command: Sequence[str],
        exit_code: int,
        stderr: str = "",
        container: str | None = None,
    ) -> None:
        self.command = list(command)
        self.exit_code = exit_code
        self.stderr = stderr
        self.container = container
        where = f" in container {container}" if container else ""
        tail = stderr.strip()[-2000:]
        super().__init__(
            f"Command {' '.join(self.command)!r}{where} exited with {exit_code}"
            + (f":\n{tail}" if tail else ".")
        )


class ToolMissing(OpslibError):
    """An external tool opslib needs is not installed.

    Attributes:
        tool: The program name.
        hint: How to install it.
    """

    def __init__(self, tool: str, hint: str) -> None:
        self.tool = tool
        self.hint = hint
        super().__init__(f"{tool} is not installed: {hint}")


class PlanError(OpslibError):
    """A plan cannot be built, or is stale or unsafe to apply.

    Attributes:
        reason: Why.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ApplyError(OpslibError):
    """An approved action failed while being applied.

    Attributes:
        action: The action that failed (as shown in the plan).
        reason: What went wrong; the journal says what was already done.
    """

    def __init__(self, action: str, reason: str) -> None:
        self.action = action
        self.reason = reason
        super().__init__(
            f"Applying {action!r} failed: {reason}. The journal records what was done; "
            "rerun the same plan to resume."
        )


class VerificationFailed(OpslibError):
    """A check of an artefact failed (checksum, size, row counts, health after a change).

    Attributes:
        check: The name of the check.
        path: The file or object checked.
        detail: Expected vs. found.
    """

    def __init__(self, check: str, path: str, detail: str) -> None:
        self.check = check
        self.path = path
        self.detail = detail
        super().__init__(f"Check {check!r} failed for {path}: {detail}")


class RunbookError(OpslibError):
    """A runbook run did not complete."""


class RunbookExecutionError(RunbookError):
    """A notebook cell raised during a run.

    Attributes:
        cell_index: Index of the failing cell.
        ename: Exception class name raised in the kernel.
        evalue: Its message.
        report: Path of the report written despite the failure, if any.
    """

    def __init__(
        self, cell_index: int, ename: str, evalue: str, report: str | None = None
    ) -> None:
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.report = report
        super().__init__(
            f"Cell {cell_index} raised {ename}: {evalue}"
            + (f" (report: {report})" if report else "")
        )


class RunbookTimeout(RunbookError):
    """A run exceeded its timeout, or its kernel died.

    Attributes:
        timeout: The timeout in seconds (``None`` when the kernel died).
        cell_index: The cell that was running, when known.
    """

    def __init__(self, timeout: float | None, cell_index: int | None, detail: str = "") -> None:
        self.timeout = timeout
        self.cell_index = cell_index
        what = f"timed out after {timeout:g} s" if timeout is not None else "lost its kernel"
        where = f" in cell {cell_index}" if cell_index is not None else ""
        super().__init__(
            f"The run {what}{where}. {detail}".strip()
            + " Raise --timeout, or look at the report for the cell that hung."
        )

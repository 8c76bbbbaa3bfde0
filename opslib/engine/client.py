"""Connect to a Docker engine, the client type, the errors mapped once, compose labels."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

from opslib.exceptions import (
    ContainerNotFound,
    EngineRefused,
    EngineUnreachable,
    OpslibError,
)

__all__ = [
    "CONFIG_FILES_LABEL",
    "NUMBER_LABEL",
    "ONEOFF_LABEL",
    "PROJECT_LABEL",
    "SERVICE_LABEL",
    "WORKDIR_LABEL",
    "Client",
    "connect",
    "engine_errors",
]


PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
ONEOFF_LABEL = "com.docker.compose.oneoff"
WORKDIR_LABEL = "com.docker.compose.project.working_dir"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"


class Client(Protocol):
    """What opslib uses of a ``docker.DockerClient`` (docker-py ships no types).

    Only :mod:`opslib.engine` touches these attributes; every other package passes the client
    through to engine functions.
    """

    @property
    def containers(self) -> Any: ...
    @property
    def networks(self) -> Any: ...
    @property
    def images(self) -> Any: ...
    @property
    def api(self) -> Any: ...
    def info(self) -> Any: ...
    def close(self) -> None: ...


@contextlib.contextmanager
def engine_errors(url: str | None = None, container: str | None = None) -> Iterator[None]:
    """Translate docker-py / requests errors raised inside the block into opslib errors.

    Args:
        url: The engine URL, for the message of :class:`EngineUnreachable`.
        container: The container concerned, for :class:`ContainerNotFound`.

    Raises:
        EngineUnreachable: The engine did not answer (or not in time).
        ContainerNotFound: The engine answered 404 for a container.
        EngineRefused: Any other engine API error, with its HTTP status and explanation.
    """
    import docker.errors
    import requests.exceptions

    try:
        yield
    except OpslibError:
        raise
    except docker.errors.NotFound as exc:
        raise ContainerNotFound(container or str(exc.explanation or exc)) from exc
    except docker.errors.APIError as exc:
        raise EngineRefused(exc.status_code, str(exc.explanation or exc)) from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineUnreachable(url, str(exc)) from exc


def connect(url: str | None = None, timeout: int = 60) -> Client:
    """Connect to a Docker engine and check that it answers.

    Args:
        url: Engine URL (``unix:///var/run/docker.sock``, ``tcp://host:2376``,
            ``ssh://user@host``). ``None`` uses the environment (``DOCKER_HOST``, default socket).
        timeout: Seconds to wait for each API call.

    Returns:
        A ``docker.DockerClient``.

    Raises:
        EngineUnreachable: No engine answers at that URL.
    """
    import docker

    with engine_errors(url):
        if url:
            client = docker.DockerClient(
                base_url=url, timeout=timeout, use_ssh_client=url.startswith("ssh://")
            )
        else:
            client = docker.from_env(timeout=timeout)
        client.ping()
    client_: Client = client
    return client_

"""Single engine calls on containers, images and networks, with the errors mapped once.

The domains never call docker-py themselves: they pass the client and the objects these
functions return back to :mod:`opslib.engine`. Every function raises only
:mod:`opslib.exceptions` errors (:class:`ContainerNotFound` for a 404 on a container,
:class:`EngineRefused` with the HTTP status for other API errors, :class:`EngineUnreachable`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from opslib.engine.client import Client, engine_errors

__all__ = [
    "container_diff",
    "container_logs",
    "container_top",
    "create_network",
    "engine_info",
    "exec_socket",
    "get_archive",
    "get_container",
    "image_env",
    "image_history",
    "iter_container_logs",
    "labeled_containers",
    "labeled_networks",
    "one_shot_stats",
    "pause",
    "put_archive",
    "reload",
    "reload_network",
    "remove_container",
    "remove_network",
    "run_container",
    "unpause",
]


def _name(container: Any) -> str:
    return container if isinstance(container, str) else str(container.name)


def engine_info(client: Client) -> dict[str, Any]:
    """The engine's ``docker info`` document.

    Args:
        client: A ``docker.DockerClient``.

    Returns:
        The info mapping (``SecurityOptions``, ``Swarm``, ``NCPU`` ...).
    """
    with engine_errors():
        return dict(client.info() or {})


def get_container(client: Client, name_or_id: str) -> Any:
    """A container object by name or id.

    Args:
        client: A ``docker.DockerClient``.
        name_or_id: The container's name or id.

    Returns:
        A ``docker.models.containers.Container``.

    Raises:
        ContainerNotFound: No such container.
    """
    with engine_errors(container=name_or_id):
        return client.containers.get(name_or_id)


def reload(container: Any) -> None:
    """Refresh a container object's state and inspect document (``container.attrs``).

    Raises:
        ContainerNotFound: The container was removed.
    """
    with engine_errors(container=_name(container)):
        container.reload()


def container_top(container: Any, ps_args: str) -> dict[str, Any]:
    """``docker top`` of a container: ``{"Titles": [...], "Processes": [[...], ...]}``.

    Raises:
        ContainerNotFound: The container was removed.
        EngineRefused: It is not running, or its ``ps`` does not take ``ps_args``.
    """
    with engine_errors(container=_name(container)):
        return dict(container.top(ps_args=ps_args) or {})


def container_diff(container: Any) -> list[dict[str, Any]]:
    """``docker diff``: the paths changed in a container's writable layer (``Path``, ``Kind``)."""
    with engine_errors(container=_name(container)):
        return list(container.diff() or [])


def container_logs(container: Any, *, tail: int) -> str:
    """The last ``tail`` lines a container logged (stdout and stderr), decoded."""
    with engine_errors(container=_name(container)):
        return bytes(container.logs(tail=tail)).decode("utf-8", "replace")


def iter_container_logs(container: Any) -> Iterator[bytes]:
    """A container's whole log through the engine (what ``docker logs`` reads), in chunks."""
    with engine_errors(container=_name(container)):
        yield from container.logs(stream=True, follow=False, stdout=True, stderr=True)


def one_shot_stats(container: Any) -> dict[str, Any]:
    """One ``docker stats --no-stream`` document of a container (``{}`` when it gave none)."""
    with engine_errors(container=_name(container)):
        return dict(container.stats(stream=False, one_shot=True) or {})


def pause(container: Any) -> None:
    """Pause (freeze) a container's processes."""
    with engine_errors(container=_name(container)):
        container.pause()


def unpause(container: Any) -> None:
    """Resume a paused container."""
    with engine_errors(container=_name(container)):
        container.unpause()


def put_archive(container: Any, path: str, data: Iterable[bytes] | bytes) -> bool:
    """Extract a tar stream into a container's ``path``; whether the engine accepted it."""
    with engine_errors(container=_name(container)):
        return bool(container.put_archive(path, data))


def get_archive(container: Any, path: str) -> Iterator[bytes]:
    """A tar stream of ``path`` in a container (the engine's chunks)."""
    with engine_errors(container=_name(container)):
        stream, _stat = container.get_archive(path)
        yield from stream


def image_env(client: Client, image: str) -> list[str]:
    """The ``Config.Env`` entries (``NAME=value``) baked into an image.

    Raises:
        ContainerNotFound: No such image (the engine answered 404).
        EngineRefused: The engine refused the inspect.
    """
    with engine_errors(container=image):
        doc = client.api.inspect_image(image) or {}
    return [str(e) for e in (doc.get("Config") or {}).get("Env") or []]


def image_history(client: Client, image: str) -> list[dict[str, Any]]:
    """``docker history`` of an image: one mapping per layer (``CreatedBy`` ...).

    Raises:
        ContainerNotFound: No such image (the engine answered 404).
        EngineRefused: The engine refused the request.
    """
    with engine_errors(container=image):
        return [dict(layer) for layer in client.api.history(image) or []]


def exec_socket(
    client: Client, container: Any, cmd: Sequence[str], *, environment: Mapping[str, str]
) -> tuple[str, Any]:
    """Start a command with stdin attached and return ``(exec id, socket)`` to talk to it.

    The socket carries the engine's multiplexed frames (8-byte header: stream, size).
    """
    name = _name(container)
    with engine_errors(container=name):
        exec_id = str(client.api.exec_create(
            name, list(cmd), stdin=True, stdout=True, stderr=True,
            environment=dict(environment),
        )["Id"])
        return exec_id, client.api.exec_start(exec_id, socket=True)


def create_network(
    client: Client, name: str, *, internal: bool, labels: Mapping[str, str]
) -> Any:
    """Create a bridge network (``internal``: no route out)."""
    with engine_errors():
        return client.networks.create(name, driver="bridge", internal=internal,
                                      labels=dict(labels))


def run_container(
    client: Client,
    image: str,
    *,
    name: str,
    network: str,
    labels: Mapping[str, str],
    environment: Mapping[str, str],
) -> Any:
    """Start a detached container from an image on a network."""
    with engine_errors():
        return client.containers.run(image, detach=True, name=name, network=network,
                                     labels=dict(labels), environment=dict(environment))


def labeled_containers(client: Client, label: str) -> list[Any]:
    """Every container (running or not) with a label (``key`` or ``key=value``)."""
    with engine_errors():
        return list(client.containers.list(all=True, filters={"label": label}))


def labeled_networks(client: Client, label: str) -> list[Any]:
    """Every network with a label (``key`` or ``key=value``)."""
    with engine_errors():
        return list(client.networks.list(filters={"label": label}))


def reload_network(network: Any) -> bool:
    """Refresh a network object; ``False`` when it was removed meanwhile."""
    import docker.errors

    with engine_errors():
        try:
            network.reload()
        except docker.errors.NotFound:
            return False
    return True


def remove_container(container: Any) -> None:
    """Remove a container with its anonymous volumes, stopping it first; gone already is fine.

    Raises:
        EngineRefused: The engine refused (busy, removal in progress).
        EngineUnreachable: The engine did not answer in time.
    """
    import docker.errors

    with engine_errors(container=_name(container)):
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            return


def remove_network(network: Any) -> None:
    """Remove a network; gone already is fine.

    Raises:
        EngineRefused: The engine refused (a container still attached ...).
        EngineUnreachable: The engine did not answer in time.
    """
    import docker.errors

    with engine_errors():
        try:
            network.remove()
        except docker.errors.NotFound:
            return

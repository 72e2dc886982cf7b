"""The stack file for `docker stack deploy` from compose.yaml's own configuration (the one source
of truth): from `docker compose --profile dask config --format json` to the stack file (JSON,
which `docker stack deploy` reads as YAML).

What Swarm (Engine 20.10, compose file format 3.x) refuses or ignores is translated or dropped:
- profiles, depends_on (Swarm has no start order: the workers retry the scheduler), the
  project's name and the x- blocks: dropped;
- restart -> deploy.restart_policy; mem_limit -> deploy.resources.limits.memory;
  shm_size and tmpfs -> tmpfs mounts;
- security_opt (no-new-privileges) and group_add: Swarm's service API has neither, dropped;
- ports: dropped: Swarm publishes a port on every interface of a node, so the stack publishes
  none and stackctl.swarm forwards loopback ports of this machine to the services instead.
Added: images from the registry (REGISTRY/<local reference>), MLflow (and the scheduling
engine, with scheduled jobs on) placed on the node labelled mlstack.mlflow=true (their volumes
live there), the workers' replica count, DNS round robin for
the services' names, and an attachable overlay network (one-off containers, such as the
gateway, join it).

Secrets: an environment value that is one of .env's secrets leaves the environment (which
`docker service inspect` shows to anyone with the Docker API) and becomes a Swarm secret, a file
/run/secrets/env.<VARIABLE> in the service's containers only, named by its content's hash (Swarm
secrets are immutable: a new .env makes new ones). The service's entrypoint is then wrapped in
SECRETS_ENV, which exports each file as its variable and executes the original entrypoint and
command: the programs see the environment they expect, and no secret value is in the stack file
or the service's spec.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from typing import Any, Callable, Mapping, Optional

# The node label that places the MLflow service (stackctl.swarm sets it when no node has it)
MLFLOW_NODE_LABEL = "mlstack.mlflow"
# Keys of a compose service that `docker stack deploy` takes as they are
KEPT = {
    "cap_add",
    "cap_drop",
    "command",
    "entrypoint",
    "environment",
    "healthcheck",
    "image",
    "labels",
    "networks",
    "read_only",
    "stop_grace_period",
    "stop_signal",
    "user",
    "volumes",
    "working_dir",
}
# Keys translated below, or dropped because Swarm has no such setting (see the docstring)
TRANSLATED = {"restart", "mem_limit", "shm_size", "tmpfs"}
DROPPED = {"profiles", "depends_on", "security_opt", "group_add", "ports", "env_file"}
# Exports each secret file /run/secrets/env.<VARIABLE> as <VARIABLE>, then runs the service's
# own entrypoint and command ("$@"); values never reach a command line
SECRETS_ENV = (
    'for f in /run/secrets/env.*; do [ -f "$f" ] || continue; '
    'export "${f#/run/secrets/env.}=$(cat "$f")"; done; exec "$@"'
)
# An image's own start: its config's Entrypoint, Cmd and User (docker image inspect), for what
# the service does not set itself
ImageStart = Callable[[str], Mapping[str, Any]]
# Seconds of failed healthchecks before Swarm replaces a task
HEALTHY_GRACE = 60
RESTART_CONDITIONS = {"no": "none", "always": "any", "unless-stopped": "any"}


def seconds(duration: str) -> float:
    """A Go duration as `docker compose config` writes it (``2s``, ``3m0s``, ``1h0m0s``), in
    seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"([0-9.]+)(ms|h|m|s)", duration)
    return sum(float(number) * units[unit] for number, unit in parts) or 1.0


def service_for_swarm(name: str, service: dict[str, Any], registry: str) -> dict[str, Any]:
    """One compose service as a Swarm service.

    Args:
        name: the service's name in compose.yaml (for the error message).
        service: its configuration from `docker compose config` (values interpolated).
        registry: ``host:port`` of the registry the nodes pull from.

    Raises:
        SystemExit: for a key this script does not know (compose.yaml grew a setting that needs
            a decision here).
    """
    unknown = set(service) - KEPT - TRANSLATED - DROPPED
    if unknown:
        sys.exit(
            f"error: compose.yaml's service {name} has {', '.join(sorted(unknown))}, which "
            "stackctl/swarm_stack.py does not know for Swarm; add it to KEPT, TRANSLATED or DROPPED"
        )
    swarm = {key: value for key, value in service.items() if key in KEPT and value is not None}
    swarm["image"] = f"{registry}/{service['image']}"
    # Swarm replaces a task whose healthcheck fails (Compose only marks it): a scheduler busy for
    # some seconds on a loaded machine is not dead, so about a minute of failures first. Every
    # service has compose.yaml's x-healthcheck timing (a static test checks it).
    check = swarm.setdefault("healthcheck", {})
    interval = seconds(check.get("interval", "1s"))
    check["retries"] = max(check.get("retries", 3), math.ceil(HEALTHY_GRACE / interval))
    deploy: dict[str, Any] = {}
    condition = service.get("restart", "no")
    deploy["restart_policy"] = {"condition": RESTART_CONDITIONS.get(condition, condition)}
    if str(service.get("mem_limit", "0")) not in ("0", ""):
        deploy["resources"] = {"limits": {"memory": str(service["mem_limit"])}}
    mounts = list(swarm.get("volumes", []))
    for target in service.get("tmpfs") or []:
        mounts.append({"type": "tmpfs", "target": target})
    if str(service.get("shm_size", "0")) not in ("0", ""):
        # Docker's 64 MB /dev/shm, replaced by one of the size compose.yaml gives
        size = int(service["shm_size"])
        mounts.append({"type": "tmpfs", "target": "/dev/shm", "tmpfs": {"size": size}})
    if mounts:
        swarm["volumes"] = mounts
    # The service's name resolves to its tasks' addresses (DNS round robin) instead of a virtual
    # IP: Swarm's virtual IPs need IPVS in the kernel, which some machines lack (this one), and
    # the stack publishes no port through the routing mesh, which needs them
    deploy["endpoint_mode"] = "dnsrr"
    swarm["deploy"] = deploy
    return swarm


def secret_name(stack: str, key: str, value: str) -> str:
    """The Swarm secret's name for .env's ``key`` holding ``value``: the stack and the key (cut
    to fit Swarm's 64 characters) and 12 hex digits of the SHA-256 of both key and value (a
    changed value gets a new secret)."""
    digest = hashlib.sha256(f"{key}={value}".encode()).hexdigest()[:12]
    return f"{stack}_{key.lower()}"[: 64 - 13] + f"_{digest}"


def move_secrets(
    services: dict[str, dict[str, Any]],
    config: dict[str, Any],
    secrets: Mapping[str, str],
    image_start: ImageStart,
) -> dict[str, str]:
    """Move every environment value of ``services`` that is one of ``secrets`` (.env's secret
    settings by name) into a Swarm secret reference, and wrap those services' entrypoints in
    SECRETS_ENV (their own entrypoint and command from ``config`` or, unset there, from the
    image through ``image_start``).

    Returns:
        The .env keys whose values the services now read as secrets, by the secrets' aliases
        in the stack file (``env-<KEY>``).
    """
    by_value = {value: key for key, value in secrets.items() if value}
    used: dict[str, str] = {}
    for name, service in services.items():
        # A copy: the compose configuration it came from stays as it was
        environment = dict(service.get("environment") or {})
        moved = {var: by_value[value] for var, value in environment.items() if value in by_value}
        if not moved:
            continue
        service["environment"] = environment
        for variable, key in moved.items():
            del environment[variable]
            alias = f"env-{key}"
            used[alias] = key
            service.setdefault("secrets", []).append(
                {"source": alias, "target": f"env.{variable}", "mode": 0o400}
            )
        original = config["services"][name]
        image = image_start(original["image"])
        entrypoint, command = original.get("entrypoint"), original.get("command")
        if entrypoint is None:
            entrypoint = image.get("Entrypoint")
            command = command if command is not None else image.get("Cmd")
        # $$: `docker stack deploy` interpolates the stack file, as compose does
        wrapper = SECRETS_ENV.replace("$", "$$")
        service["entrypoint"] = ["/bin/sh", "-c", wrapper, "secrets-env", *(entrypoint or [])]
        service["command"] = list(command or [])
        # The secret files are their reader's only (0400): the service's user, or the image's
        uid, _, gid = str(original.get("user") or image.get("User") or "0").partition(":")
        for reference in service["secrets"]:
            reference["uid"], reference["gid"] = uid, gid or uid
    return used


def stack_file(
    config: dict[str, Any],
    registry: str,
    workers: int,
    dask_config: str,
    secrets: Mapping[str, str] = {},
    secret_files: Mapping[str, str] = {},
    stack: str = "",
    image_start: Optional[ImageStart] = None,
) -> dict:
    """The stack file for `docker stack deploy`.

    Args:
        config: `docker compose --profile dask config --format json` (and ``--profile
            schedule`` with the scheduled jobs on), parsed.
        registry: ``host:port`` of the registry the nodes pull from (make push filled it).
        workers: the dask-worker service's replica count (>= 1).
        dask_config: DASK_CONFIG in the services, the Dask settings file stackctl.swarm
            writes (the dashboard link as this machine opens it).
        secrets: .env's secret settings by name (values moved into Swarm secrets).
        secret_files: the file holding each of those values, by name (written by the caller,
            read by `docker stack deploy`).
        stack: the stack's name (in the secrets' names).
        image_start: an image's own entrypoint and command, for services whose entrypoint is
            wrapped (see :func:`move_secrets`).
    """
    services = {
        name: service_for_swarm(name, service, registry)
        for name, service in config["services"].items()
    }
    for service in services.values():
        if "DASK_CONFIG" in service.get("environment", {}):
            service["environment"]["DASK_CONFIG"] = dask_config
    # MLflow and (with scheduled jobs) the scheduling engine beside their volumes
    for name in ("mlflow", "scheduler"):
        if name in services:
            services[name]["deploy"]["placement"] = {
                "constraints": [f"node.labels.{MLFLOW_NODE_LABEL} == true"]
            }
    services["dask-worker"]["deploy"]["replicas"] = workers
    used = move_secrets(services, config, secrets, image_start or (lambda image: {}))
    # The stack namespaces volume and network names itself (<stack>_<name>)
    volumes = {name: {} for name in config.get("volumes", {})}
    networks = {"default": {"driver": "overlay", "attachable": True}}
    stack_config = {
        "version": "3.9",
        "services": services,
        "networks": networks,
        "volumes": volumes,
    }
    if used:
        stack_config["secrets"] = {
            alias: {"file": secret_files[key], "name": secret_name(stack, key, secrets[key])}
            for alias, key in sorted(used.items())
        }
    return stack_config

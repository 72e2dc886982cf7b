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
Added: images from the registry (REGISTRY/<local reference>), MLflow placed on the node labelled
mlstack.mlflow=true (its volume lives there), the workers' replica count, DNS round robin for
the services' names, and an attachable overlay network (one-off containers, such as the
gateway, join it).

The output holds the secrets of .env (in the services' environment): write it with mode 600.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any

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
    # some seconds on a loaded machine is not dead, so about a minute of failures first. Without
    # a healthcheck in compose.yaml, the image's own applies; those run every second.
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


def stack_file(config: dict[str, Any], registry: str, workers: int, dask_config: str) -> dict:
    """The stack file for `docker stack deploy`.

    Args:
        config: `docker compose --profile dask config --format json`, parsed.
        registry: ``host:port`` of the registry the nodes pull from (make push filled it).
        workers: the dask-worker service's replica count (>= 1).
        dask_config: DASK_CONFIG in the services, the Dask settings file stackctl.swarm
            writes (the dashboard link as this machine opens it).
    """
    services = {
        name: service_for_swarm(name, service, registry)
        for name, service in config["services"].items()
    }
    for service in services.values():
        if "DASK_CONFIG" in service.get("environment", {}):
            service["environment"]["DASK_CONFIG"] = dask_config
    services["mlflow"]["deploy"]["placement"] = {
        "constraints": [f"node.labels.{MLFLOW_NODE_LABEL} == true"]
    }
    services["dask-worker"]["deploy"]["replicas"] = workers
    # The stack namespaces volume and network names itself (<stack>_<name>)
    volumes = {name: {} for name in config.get("volumes", {})}
    networks = {"default": {"driver": "overlay", "attachable": True}}
    return {"version": "3.9", "services": services, "networks": networks, "volumes": volumes}

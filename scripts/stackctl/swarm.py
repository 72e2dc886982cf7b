"""The stack on a Docker Swarm: ``make swarm-up`` pushes the images, writes the stack file from
compose.yaml (:mod:`stackctl.swarm_stack`), deploys it as <project>-swarm, starts the gateway
that forwards loopback ports of this machine to the services, waits and prints the URLs;
``make swarm-down`` removes the stack and the gateway (the volumes stay)."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from typing import List, Sequence, Tuple

from stackctl import envfile, images, modes
from stackctl.cli import dask_config, workers_count
from stackctl.envfile import EnvFile
from stackctl.proc import PROJECT, ROOT, RUNTIME, Failure, compose, docker, output, run, say
from stackctl.release import push
from stackctl.swarm_stack import MLFLOW_NODE_LABEL, stack_file

# The stack file (no secret values: those become Swarm secrets), outside the project folder the
# services see
FOLDER = ROOT / ".mlstack" / "swarm"
# Dask's settings for the services, in the project folder they mount
DASK_FILE = RUNTIME / "swarm-dask.yaml"
# Gateway port=service:port pairs: the services' own ports (the scheduling engine's UI only
# answers with the scheduled jobs on); Dask's scheduler's 8786 is not among them
FORWARDS = (
    "5000=mlflow:5000",
    "8888=jupyter:8888",
    "8787=dask-scheduler:8787",
    "4200=scheduler:4200",
)


def names() -> Tuple[str, str]:
    """The stack's name (<project>-swarm) and its gateway container's."""
    stack = f"{EnvFile.load().get('COMPOSE_PROJECT_NAME')}-swarm"
    return stack, f"{stack}-gateway"


def require_manager(command: str) -> None:
    """Raises Failure unless this engine is a manager of an active swarm."""
    state = (
        output(
            ["docker", "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"]
        )
        or ""
    )
    if state == "active true":
        return
    if state.startswith("active"):
        raise Failure(
            f"this machine is a worker of its swarm; run make {command} on a manager " "node"
        )
    raise Failure(
        "this Docker engine is in no swarm; create one with 'docker swarm init --advertise-addr "
        f"<this machine's IP>' (or join one), then run make {command} again"
    )


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (0600) from the first byte."""
    descriptor = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def image_start(image: str) -> dict:
    """An image's Entrypoint, Cmd and User (its config, docker image inspect); empty when it
    is not on this machine."""
    found = output(["docker", "image", "inspect", "--format", "{{json .Config}}", image])
    return json.loads(found) if found else {}


def replicas_met(text: str) -> bool:
    """Whether ``docker stack services``' replica column (``2/2``, ``1/2 (max 1 per node)``)
    says every replica runs."""
    found = re.match(r"^(\d+)/(\d+)", text)
    return bool(found) and found[1] == found[2]


def _services(stack: str) -> List[Tuple[str, str]]:
    listed = (
        output(["docker", "stack", "services", stack, "--format", "{{.Name}} {{.Replicas}}"]) or ""
    )
    return [tuple(line.split(" ", 1)) for line in listed.splitlines() if " " in line]


def ready(stack: str) -> bool:
    """Every service of the stack runs all its replicas and none is mid-update."""
    services = _services(stack)
    if not services:
        return False
    for name, replicas in services:
        if not replicas_met(replicas):
            return False
        state = (
            output(
                [
                    "docker",
                    "service",
                    "inspect",
                    "--format",
                    "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
                    name,
                ]
            )
            or ""
        )
        if state not in ("", "completed", "rollback_completed"):
            return False
    return True


def explain(stack: str) -> None:
    """For each service short of its replicas: its logs and its last task's error."""
    for name, replicas in _services(stack):
        if replicas_met(replicas):
            continue
        say(f"---- last logs of {name} ----", err=True)
        logs = run(
            ["docker", "service", "logs", "--no-task-ids", "--tail", "20", name],
            check=False,
            capture=True,
        )
        for line in (logs.stdout + logs.stderr).splitlines()[-20:]:
            say(line, err=True)
        task = (
            output(
                [
                    "docker",
                    "service",
                    "ps",
                    "--no-trunc",
                    "--format",
                    "{{.CurrentState}} {{.Error}}",
                    name,
                ]
            )
            or ""
        ).splitlines()
        say(
            f"error: service {name} runs {replicas} replicas; last task: "
            f"{task[0] if task else ''}; see 'docker service ps {name}'",
            err=True,
        )


def url_of(gateway: str, port: str) -> str:
    """The gateway's loopback URL for one of its ports."""
    address = (output(["docker", "port", gateway, f"{port}/tcp"]) or "").splitlines()
    return f"http://{address[0] if address else ''}"


def up(argv: Sequence[str] = ()) -> None:
    """``make swarm-up REGISTRY=... WORKERS=N`` (see the module's docstring).

    Raises:
        Failure: a bad WORKERS, no swarm manager, no registry, or services not ready in time.
    """
    registry = argv[0] if argv else ""
    workers = workers_count(argv[1] if len(argv) > 1 else "", minimum=1, command="make swarm-up")
    require_manager("swarm-up")
    if not registry:
        raise Failure(
            "no registry given; the swarm's nodes pull the images from one: make swarm-up "
            "REGISTRY=127.0.0.1:5000 (none yet? docs/swarm.md)"
        )
    stack, gateway = names()
    push(registry)
    images.build(["gateway"], os.environ)
    gateway_image = envfile.stack_image("gateway")
    if output(["docker", "image", "inspect", gateway_image]) is None:
        raise Failure("the gateway image was not built; see the build's messages above")
    # MLflow's volume lives on one node: the labelled one, this machine unless one has it
    label = MLFLOW_NODE_LABEL
    if not output(["docker", "node", "ls", "--quiet", "--filter", f"node.label={label}=true"]):
        node = output(["docker", "info", "--format", "{{.Swarm.NodeID}}"]) or ""
        docker("node", "update", "--label-add", f"{label}=true", node, quiet=True)
        say(
            f"swarm: labelled this node ({socket.gethostname()}) {label}=true: MLflow and its "
            "data volume live here"
        )
    FOLDER.mkdir(parents=True, exist_ok=True)
    scheduled = envfile.scheduled()
    profiles = ["--profile", "dask"] + (["--profile", modes.SCHEDULE_PROFILE] if scheduled else [])
    config = json.loads(compose(*profiles, "config", "--format", "json", capture=True).stdout)
    dask_file = f"/project/{DASK_FILE.relative_to(PROJECT)}"
    env = EnvFile.load()
    secrets = {key: env.get(key) for key in envfile.SECRETS + envfile.GIVEN_SECRETS if env.get(key)}
    # Each secret in a file of its own for `docker stack deploy` to read, deleted right after:
    # the values stay in .env and in the swarm's encrypted store only
    secret_folder = FOLDER / "secrets"
    secret_folder.mkdir(mode=0o700, exist_ok=True)
    secret_files = {key: str(secret_folder / key) for key in secrets}
    stack_json = FOLDER / "stack.json"
    try:
        for key, value in secrets.items():
            write_private(Path(secret_files[key]), value)
        write_private(
            stack_json,
            json.dumps(
                stack_file(
                    config, registry, workers, dask_file, secrets, secret_files, stack,
                    image_start,
                ),
                indent=2,
            ),
        )  # fmt: skip
        docker(
            "stack",
            "deploy",
            "--detach=true",
            "--with-registry-auth",
            "--prune",
            "--compose-file",
            str(stack_json),
            stack,
        )
    finally:
        for path in secret_folder.iterdir():
            path.unlink()
    # A container of this machine on the stack's overlay network, publishing on loopback only
    if output(["docker", "inspect", "--format", "{{.State.Running}}", gateway]) != "true":
        run(["docker", "rm", "--force", gateway], check=False, quiet=True)
        published = [
            part for pair in FORWARDS for part in ("--publish", f"127.0.0.1::{pair.split('=')[0]}")
        ]
        docker(
            "run",
            "--detach",
            "--name",
            gateway,
            "--network",
            f"{stack}_default",
            "--restart",
            "unless-stopped",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges:true",
            "--label",
            f"mlstack.swarm.stack={stack}",
            *published,
            gateway_image,
            *FORWARDS,
            quiet=True,
        )
    DASK_FILE.parent.mkdir(parents=True, exist_ok=True)
    DASK_FILE.write_text(dask_config(url_of(gateway, "8787")))
    deadline = time.monotonic() + int(os.environ.get("MLSTACK_UP_TIMEOUT") or 300)
    while not ready(stack):
        if time.monotonic() >= deadline:
            explain(stack)
            raise Failure("", status=1)
        time.sleep(2)
    token = EnvFile.load().get("JUPYTER_TOKEN")
    say(f"MLflow:  {url_of(gateway, '5000')}")
    say(f"Jupyter: {url_of(gateway, '8888')}/lab?token={token}")
    say(
        f"Dask:    {url_of(gateway, '8787')}/status ({workers} workers; Client() connects in "
        "Jupyter)"
    )
    if scheduled:
        say(
            f"Schedules: {url_of(gateway, '4200')} (its login: MLSTACK_SCHEDULER_AUTH in .env, "
            "admin:...; make schedules lists the jobs)"
        )
        from stackctl import schedules

        schedules.apply()
    say(
        f"swarm: stack {stack}; the URLs are on this machine's loopback (elsewhere: ssh -L, see "
        "docs/swarm.md)"
    )


def down(argv: Sequence[str] = ()) -> None:
    """``make swarm-down``: the stack and the gateway removed, the volumes kept."""
    if output(["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"]) == "inactive":
        say("swarm: this Docker engine is in no swarm; nothing to remove")
        return
    require_manager("swarm-down")
    stack, gateway = names()
    run(["docker", "rm", "--force", gateway], check=False, quiet=True)
    stacks = (output(["docker", "stack", "ls", "--format", "{{.Name}}"]) or "").splitlines()
    if stack not in stacks:
        say(f"swarm: no stack {stack} on this swarm")
    else:
        docker("stack", "rm", stack)
        # Swarm removes tasks and network in the background: wait, so that a following
        # swarm-up does not meet a network being removed
        deadline = time.monotonic() + 120
        while (
            output(
                [
                    "docker",
                    "ps",
                    "--all",
                    "--quiet",
                    "--filter",
                    f"label=com.docker.stack.namespace={stack}",
                ]
            )
            or output(["docker", "network", "inspect", f"{stack}_default"]) is not None
        ):
            if time.monotonic() >= deadline:
                raise Failure(
                    f"the stack {stack}'s containers or network are still there after "
                    f"120 s; see 'docker stack ps {stack}'"
                )
            time.sleep(1)
    for path in (FOLDER / "stack.json", DASK_FILE):
        if path.exists():
            path.unlink()
    say(f"swarm: volumes kept ({stack}_mlflow-data on the node labelled {MLFLOW_NODE_LABEL}=true)")

"""The Swarm stack file's secrets: .env's secret values leave every service's environment for
Swarm secrets, and the wrapped entrypoint gives the programs the variables they expect."""

from __future__ import annotations

import json
import subprocess

from stackctl import swarm_stack

SECRETS = {"MLFLOW_ADMIN_PASSWORD": "admin-secret-1", "JUPYTER_TOKEN": "token-secret-2"}
CONFIG = {
    "services": {
        "jupyter": {
            "image": "p-jupyter:1",
            "user": "4242:4343",
            "environment": {
                "MLFLOW_TRACKING_PASSWORD": "admin-secret-1",
                "JUPYTER_TOKEN": "token-secret-2",
                "PYTHONPATH": "/project/src",
            },
        },
        "mlflow": {
            "image": "stack/mlflow:1",
            "environment": {"MLFLOW_AUTH_ADMIN_PASSWORD": "admin-secret-1"},
        },
        "dask-worker": {
            "image": "p-jupyter:1",
            "entrypoint": ["/usr/bin/tini", "--"],
            "command": ["dask", "worker"],
            "environment": {"PYTHONPATH": "/project/src"},
        },
        "dask-scheduler": {"image": "p-jupyter:1"},
    },
    "volumes": {},
}
IMAGES = {
    "p-jupyter:1": {"Entrypoint": ["/usr/bin/tini", "--"], "Cmd": ["start-jupyter"]},
    "stack/mlflow:1": {"Entrypoint": ["tini", "--"], "Cmd": ["mlflow-start"], "User": "1000:1000"},
}


def stack():
    files = {key: f"/tmp/s/{key}" for key in SECRETS}
    return swarm_stack.stack_file(
        CONFIG, "127.0.0.1:5000", 1, "/project/d.yaml", SECRETS, files, "p-swarm", IMAGES.get
    )


def test_no_secret_value_is_in_the_stack_file():
    text = json.dumps(stack())
    assert all(value not in text for value in SECRETS.values())


def test_each_service_gets_only_the_secrets_it_used_readable_by_its_user():
    services = stack()["services"]
    targets = {
        name: sorted((s["target"], s["uid"], s["gid"], s["mode"]) for s in svc.get("secrets", []))
        for name, svc in services.items()
    }
    assert targets == {
        "jupyter": [
            ("env.JUPYTER_TOKEN", "4242", "4343", 0o400),
            ("env.MLFLOW_TRACKING_PASSWORD", "4242", "4343", 0o400),
        ],
        "mlflow": [("env.MLFLOW_AUTH_ADMIN_PASSWORD", "1000", "1000", 0o400)],
        "dask-worker": [],
        "dask-scheduler": [],
    }
    assert services["jupyter"]["environment"] == {"PYTHONPATH": "/project/src"}
    declared = stack()["secrets"]
    assert declared["env-MLFLOW_ADMIN_PASSWORD"]["file"] == "/tmp/s/MLFLOW_ADMIN_PASSWORD"
    # Named by content: a new .env makes a new secret (Swarm's are immutable)
    name = declared["env-MLFLOW_ADMIN_PASSWORD"]["name"]
    assert name.startswith("p-swarm_mlflow_admin_password_")
    assert name != swarm_stack.secret_name("p-swarm", "MLFLOW_ADMIN_PASSWORD", "other")
    # Swarm's limit: 64 characters of [a-zA-Z0-9-_.], alphanumeric at both ends
    long = swarm_stack.secret_name(
        "mlstack-swarm-9b4c9e19-swarm", "MLFLOW_FLASK_SERVER_SECRET_KEY", "v"
    )
    assert len(long) <= 64 and long[0].isalnum() and long[-1].isalnum()


def test_a_wrapped_service_starts_its_own_entrypoint_and_command():
    services = stack()["services"]
    # Escaped for `docker stack deploy`'s interpolation ($$ is one $)
    wrapper = ["/bin/sh", "-c", swarm_stack.SECRETS_ENV.replace("$", "$$"), "secrets-env"]
    assert services["jupyter"]["entrypoint"] == wrapper + ["/usr/bin/tini", "--"]
    assert services["jupyter"]["command"] == ["start-jupyter"]
    assert services["mlflow"]["entrypoint"] == wrapper + ["tini", "--"]
    assert services["mlflow"]["command"] == ["mlflow-start"]
    # Without secrets a service keeps what it had
    assert services["dask-worker"]["entrypoint"] == ["/usr/bin/tini", "--"]
    assert "entrypoint" not in services["dask-scheduler"]


def test_the_wrapper_exports_each_secret_file_as_its_variable(tmp_path):
    (tmp_path / "env.MLFLOW_TRACKING_PASSWORD").write_text("p@ss word'$x")
    (tmp_path / "other").write_text("not exported")
    script = swarm_stack.SECRETS_ENV.replace("/run/secrets", str(tmp_path))
    result = subprocess.run(
        ["/bin/sh", "-c", script, "secrets-env", "env"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "MLFLOW_TRACKING_PASSWORD=p@ss word'$x" in result.stdout.splitlines()
    assert "not exported" not in result.stdout

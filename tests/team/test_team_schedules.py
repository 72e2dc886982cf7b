"""Scheduled jobs in team mode: the engine keeps its state in the team's PostgreSQL (its own role
and database), refuses requests without credentials, and keeps the jobs across its containers' recreation. Run on the shared team stack, which it leaves with the scheduled jobs off again.
"""

from __future__ import annotations

import requests

from tests.helpers import scheduler_api, scheduler_rows, secret_holders
from tests.team.helpers import TeamStack


def test_in_team_mode_the_engines_state_is_in_postgresql_behind_a_login(team_stack: TeamStack):
    try:
        started = team_stack.make("up", "SCHEDULE=1")
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        assert "schedules: added nightly-train " in started.stdout
        settings = team_stack.settings()
        api, _ = scheduler_api(team_stack.directory)
        assert requests.post(f"{api}/deployments/filter", json={}, timeout=10).status_code == 401
        names = lambda: sorted(  # noqa: E731
            each["name"] for each in scheduler_rows(team_stack.directory, "deployments")
        )
        jobs = names()
        assert jobs == ["hourly-drift", "morning-predictions", "nightly-train"]
        # The jobs are rows of the engine's own database on the team's PostgreSQL
        rows = team_stack.psql("SELECT name FROM deployment ORDER BY name", database="scheduler")
        assert [row[0] for row in rows] == jobs
        owner = team_stack.psql(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'scheduler'"
        )
        assert owner == [["scheduler"]]
        # Only PostgreSQL and the engine hold the role's password; jobs and notebooks do not
        secret = settings["MLSTACK_SCHEDULER_DB_PASSWORD"]
        assert secret_holders(team_stack.name, secret) == {"postgres", "scheduler"}
        assert secret_holders(team_stack.name, settings["MLFLOW_ADMIN_PASSWORD"]) == {"mlflow"}
        # The engine's containers recreated (the rest of the shared stack left running, so
        # the later tests still read its first start's logs): the jobs come back from PostgreSQL
        removed = team_stack.compose("rm", "--stop", "--force", "scheduler", "scheduler-worker")
        assert removed.returncode == 0, removed.stderr
        again = team_stack.make("up")
        assert again.returncode == 0, again.stderr[-2000:]
        assert "schedules: added" not in again.stdout and names() == jobs
    finally:
        off = team_stack.make("up", "SCHEDULE=0")
        assert off.returncode == 0, off.stderr[-2000:]
    assert not team_stack.compose("ps", "--quiet", "scheduler").stdout.strip()

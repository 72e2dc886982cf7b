"""make schedule-run's checks before anything reaches the worker, and the refusal when the
scheduled jobs are off: one line each, with the command that works."""

from __future__ import annotations

import pytest

from stackctl import schedules
from stackctl.proc import Failure


@pytest.mark.parametrize(
    "argv, says",
    [
        ([], "say which job: make schedule-run JOB=nightly-train"),
        (["nightly train"], "'nightly train' is not a job name"),
        (["../x"], "'../x' is not a job name"),
    ],
)
def test_a_missing_or_malformed_job_name_is_refused_in_one_line(argv, says):
    with pytest.raises(Failure) as refused:
        schedules.run_now(argv)
    assert refused.value.status == 2 and says in str(refused.value)


def test_with_the_scheduled_jobs_off_each_command_says_how_to_turn_them_on(monkeypatch):
    monkeypatch.setenv("COMPOSE_PROFILES", "")
    monkeypatch.setattr(schedules.envfile, "scheduled", lambda: False)
    for command in (schedules.schedules, lambda argv: schedules.run_now(["nightly-train"])):
        with pytest.raises(Failure) as refused:
            command([])
        assert str(refused.value) == (
            "scheduled jobs are off in this clone; turn them on with make up SCHEDULE=1"
        )

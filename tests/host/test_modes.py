"""The mode (TEAM, GPU) to the compose files every compose call merges."""

import pytest

from stackctl.modes import compose_files, describe, is_team
from stackctl.proc import Failure


@pytest.mark.parametrize(
    "current, gpu, team, files",
    [
        ("compose.yaml", "", "", "compose.yaml"),
        ("compose.yaml", "1", "", "compose.yaml:compose.gpu.yaml"),
        ("compose.yaml", "", "1", "compose.yaml:compose.team.yaml"),
        # The team override stays last, so it wins over the GPU one
        (
            "compose.yaml:compose.team.yaml",
            "1",
            "",
            "compose.yaml:compose.gpu.yaml:compose.team.yaml",
        ),
        ("compose.yaml:compose.gpu.yaml:compose.team.yaml", "0", "0", "compose.yaml"),
        ("compose.yaml:compose.team.yaml", "", "1", "compose.yaml:compose.team.yaml"),
        # A hand-written list keeps its own files
        ("compose.yaml:my.yaml", "", "1", "compose.yaml:my.yaml:compose.team.yaml"),
    ],
)
def test_switches_add_and_remove_their_file(current, gpu, team, files):
    assert compose_files(current, gpu, team) == files


@pytest.mark.parametrize("gpu, team, name", [("2", "", "GPU"), ("", "on", "TEAM")])
def test_a_switch_other_than_1_or_0_is_refused_naming_it(gpu, team, name):
    with pytest.raises(Failure) as refused:
        compose_files("compose.yaml", gpu, team)
    assert refused.value.status == 2
    assert f"(make up {name}=1, make up {name}=0), not '{gpu or team}'" in str(refused.value)


def test_team_mode_is_read_from_the_file_list():
    assert is_team("compose.yaml:compose.team.yaml") and not is_team("compose.yaml")
    assert describe("compose.yaml").startswith("the SQLite tracking server")


@pytest.mark.parametrize(
    "current, switch, profiles",
    [("", "1", "schedule"), ("schedule", "", "schedule"), ("schedule", "0", ""),
     ("mine,schedule", "0", "mine"), ("mine", "1", "mine,schedule")],
)  # fmt: skip
def test_the_schedule_switch_adds_and_removes_its_profile(current, switch, profiles):
    from stackctl.modes import is_scheduled
    from stackctl.modes import profiles as switched

    assert switched(current, switch) == profiles
    assert is_scheduled(profiles) == ("schedule" in profiles.split(","))

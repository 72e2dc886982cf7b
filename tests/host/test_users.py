"""The user commands' checks before anything reaches the tracking server: names, what a grant
is on, and each refusal's one line with the command that works."""

from __future__ import annotations

import pytest

from stackctl import users
from stackctl.proc import Failure


@pytest.mark.parametrize("name", ["ada", "bob.smith", "ada@example.org", "a-1_b"])
def test_user_names_of_letters_digits_and_punctuation_pass(name):
    assert users.checked_name(name, "user-add") == name


@pytest.mark.parametrize("name", ["", "-ada", "ada smith", "ada/../x", "a" * 65, "ada'"])
def test_a_bad_user_name_is_one_line_with_the_command_that_works(name):
    with pytest.raises(Failure) as refused:
        users.checked_name(name, "user-add")
    assert refused.value.status == 2
    assert "make user-add NAME=ada" in str(refused.value) and "\n" not in str(refused.value)


def test_a_grant_is_on_exactly_one_experiment_or_model():
    assert users.grant_target("wine", "") == ("experiment", "wine")
    assert users.grant_target("", "wine-classifier") == ("model", "wine-classifier")
    for both_or_neither in (("wine", "wine-classifier"), ("", "")):
        with pytest.raises(Failure) as refused:
            users.grant_target(*both_or_neither)
        assert "EXPERIMENT=" in str(refused.value) and refused.value.status == 2

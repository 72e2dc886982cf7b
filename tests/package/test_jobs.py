"""mlstack.jobs: the options jobs share."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from mlstack import CommaList


@click.command()
@click.option("--max-depth", type=CommaList(click.INT, none_word="none"), default="3,none")
def search(max_depth):
    click.echo(repr(max_depth))


def test_a_comma_list_converts_each_item_and_the_none_word():
    result = CliRunner().invoke(search, ["--max-depth", "3, 6,None"])
    assert result.exit_code == 0 and result.output == "[3, 6, None]\n"
    assert CliRunner().invoke(search, []).output == "[3, None]\n"


@pytest.mark.parametrize("value", ["3,x", "3,,6"])
def test_a_bad_item_is_clicks_one_line_error_naming_it(value):
    result = CliRunner().invoke(search, ["--max-depth", value])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "is not a valid integer" in errors[0]

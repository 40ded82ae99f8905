"""`agentcron cron next`: the next instants, or exit 1 with one line when they run out."""

from __future__ import annotations

import pytest

from daemon.cli import main

OUT_OF_RANGE = [
    # The local time of --after is before year 1: no search can start there.
    (["0 0 * * *", "--timezone", "Etc/GMT+12", "--after", "0001-01-01T00:00:00"], []),
    (["0 0 * * *", "--after", "0001-01-01T00:00:00+01:00", "-n", "1"], []),
    # The next local midnight is in year 10000.
    (["0 0 * * *", "--timezone", "Asia/Tokyo", "--after", "9999-12-31T14:00:00Z"], []),
    (["0 0 * * *", "--after", "9999-12-31T23:59:00-05:00"], []),
    # Local 23:00 on the last day is 11:00 next day in UTC, in year 10000.
    (["0 23 31 12 *", "--timezone", "Etc/GMT+12", "--after", "9999-12-30T00:00Z"], []),
    # Some instants exist, fewer than asked for: they are printed, then the error.
    (["0 0 * * *", "--after", "9999-12-30T00:00:00Z", "-n", "3"], ["9999-12-31T00:00:00+00:00"]),
    (
        ["0 0 * * *", "--timezone", "Etc/GMT-14", "--after", "9999-12-30T00:00Z", "-n", "2"],
        ["9999-12-30T10:00:00+00:00"],
    ),
]


@pytest.mark.parametrize(("args", "printed"), OUT_OF_RANGE)
def test_running_out_of_years_exits_1_with_one_line(
    args: list[str], printed: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cron", "next", *args]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == printed
    (line,) = err.splitlines()
    assert line.startswith("agentcron: ") and "within years 1 to 9999" in line
    assert args[0] in line


IN_RANGE = [
    (
        ["0 0 * * *", "--after", "0001-01-01T00:00:00", "-n", "2"],
        ["0001-01-02T00:00:00+00:00", "0001-01-03T00:00:00+00:00"],
    ),
    (
        ["* * * * *", "--timezone", "Etc/GMT+12", "--after", "9999-12-31T23:57Z", "-n", "2"],
        ["9999-12-31T23:58:00+00:00", "9999-12-31T23:59:00+00:00"],
    ),
    (
        ["59 23 31 12 *", "--after", "9999-01-01T00:00Z", "-n", "1"],
        ["9999-12-31T23:59:00+00:00"],
    ),
]


@pytest.mark.parametrize(("args", "printed"), IN_RANGE)
def test_instants_up_to_the_edges_are_printed(
    args: list[str], printed: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cron", "next", *args]) == 0
    assert capsys.readouterr() == ("\n".join(printed) + "\n", "")

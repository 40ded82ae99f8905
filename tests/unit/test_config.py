"""The configuration file: defaults, strict validation, cross-checks, located errors, secrets."""

from __future__ import annotations

import hashlib
import re
import textwrap
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args, get_origin

import pytest
from pydantic import BaseModel

from daemon.config import (
    Config,
    ConfigError,
    ServiceUserConfig,
    load_config,
    load_storage_path,
    parse_duration,
)
from daemon.reload import keep_restart_keys
from daemon.secrets import read_secret

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
DEMO_TOKEN = "cog_demo_token_change_me"

BASE = """
[[orgs]]
id = "org-a"
name = "A"

[[users]]
id = "user-alice"
orgs = ["org-a"]
permissions = ["UseDevinSessions"]
"""


@pytest.fixture(autouse=True)
def _no_ambient_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("AGENTCRON_TEST_TOKEN", raising=False)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agentcron.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    """1-based line of the `occurrence`-th line of the file containing `needle`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    hits = [number for number, line in enumerate(lines, start=1) if needle in line]
    return hits[occurrence - 1]


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --------------------------------------------------------------------------- the example


def test_example_file_loads_as_a_working_local_setup() -> None:
    config = load_config(EXAMPLE)

    assert config.source_path == EXAMPLE
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8787)
    assert config.storage.path == EXAMPLE.parent / "agentcron.db"
    assert config.launcher.type == "command"
    assert config.launcher.command and config.launcher.command[0] == "sh"
    assert [org.id for org in config.orgs] == ["org-local"]
    assert config.service_users[0].token_sha256 == sha256(DEMO_TOKEN)
    assert config.agentscope.enabled is False
    heartbeat = config.schedules[0]
    assert (heartbeat.name, heartbeat.cron, heartbeat.org) == (
        "heartbeat",
        "* * * * *",
        "org-local",
    )
    assert config.playbooks[0].id.startswith("playbook-")


def example_keys_by_section() -> dict[str, set[str]]:
    """Keys written (or shown commented out) under each `[section]` / `[[section]]`."""
    keys: dict[str, set[str]] = defaultdict(set)
    section = ""
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        # `[launchers.NAME]` tables are shown commented out: their keys are `launchers`'s.
        if header := re.fullmatch(r"(?:# )?\[\[?([a-z_]+)(?:\.[a-z_]+)?\]\]?\s*", line):
            section = header[1]
        elif key := re.match(r"#? ?([a-z_0-9]+) = ", line):
            keys[section].add(key[1])
    keys["launchers"] |= keys["launcher"]  # the same keys: each is described once, there
    return keys


def section_model(annotation: object) -> type[BaseModel]:
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation)
    if get_origin(annotation) is dict:
        (_, annotation) = get_args(annotation)
    assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation


def test_example_documents_every_key_of_every_section() -> None:
    documented = example_keys_by_section()
    missing = [
        f"{section}.{key}"
        for section, field in Config.model_fields.items()
        if not field.exclude
        for key in section_model(field.annotation).model_fields
        if key not in documented[section]
    ]
    assert missing == []


def test_an_empty_file_gives_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, ""))

    assert config.server.listen == "127.0.0.1:8787"
    assert config.server.max_body_bytes == 1_048_576
    assert config.server.request_timeout == 30
    assert config.server.max_connections == 4096
    assert config.storage.path == tmp_path / "agentcron.db"
    assert (config.logging.level, config.logging.format) == ("info", "auto")
    scheduler = config.scheduler
    assert (scheduler.catchup_window, scheduler.catchup_rate) == (3600, 5)
    assert (scheduler.max_concurrent_launches, scheduler.max_consecutive_failures) == (100, 0)
    assert (scheduler.shutdown_grace, scheduler.horizon, scheduler.missed_run_grace) == (20, 300, 2)
    assert (config.identity.bot_user_id, config.identity.token_prefix) == ("bot", "cog_")
    assert (config.launcher.type, config.launcher.timeout, config.launcher.max_attempts) == (
        "http",
        60,
        5,
    )
    assert config.notify.webhook_url == ""
    assert config.agentscope.enabled is False
    assert (config.orgs, config.schedules) == ([], [])


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("0s", 0), (0, 0), (45, 45)],
)
def test_parse_duration_reads_units_and_integer_seconds(written: str | int, seconds: float) -> None:
    assert parse_duration(written) == seconds


@pytest.mark.parametrize("written", ["", "90", "1.5h", "15 m", "2w", "-5s", "h", -1, True])
def test_parse_duration_refuses_anything_else(written: str | int) -> None:
    with pytest.raises(ValueError):
        parse_duration(written)


def test_durations_in_the_file_become_seconds(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            """
            [scheduler]
            catchup_window = "2h"
            shutdown_grace = 5
            horizon = "1m"
            [launcher]
            timeout = "90s"
            """,
        )
    )
    assert config.scheduler.catchup_window == 7200
    assert config.scheduler.shutdown_grace == 5
    assert config.scheduler.horizon == 60
    assert config.launcher.timeout == 90


@pytest.mark.parametrize(
    ("section", "key", "literal"),
    [
        ("scheduler", "horizon", '"0s"'),
        ("launcher", "timeout", '"0s"'),
        ("server", "request_timeout", "0"),
        ("scheduler", "catchup_window", '"1w"'),
        ("scheduler", "shutdown_grace", "-5"),
        ("launcher", "follow_interval", '"500ms"'),
        ("launcher", "follow_interval", "0"),
        ("launcher", "follow_timeout", '"0s"'),
    ],
)
def test_bad_durations_are_refused(tmp_path: Path, section: str, key: str, literal: str) -> None:
    error = load_error(tmp_path, f"[{section}]\n{key} = {literal}\n")
    assert f":2: {section}.{key}: " in str(error)


def test_following_keys_and_their_defaults(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "[launcher]\nfollow = true\n"))
    launcher = config.launcher
    assert (launcher.follow, launcher.follow_interval, launcher.follow_timeout) == (
        True,
        30.0,
        6 * 3600.0,
    )
    assert launcher.session_status_url == launcher.url + "/{session_id}"
    assert config.scheduler.max_concurrent_follows == 100


def test_a_follow_interval_under_a_second_names_the_key(tmp_path: Path) -> None:
    error = load_error(tmp_path, "[launcher]\nfollow = true\nfollow_interval = 0\n")
    assert ":3: launcher.follow_interval: must be at least 1s" in str(error)


def test_a_command_launcher_cannot_be_told_to_follow(tmp_path: Path) -> None:
    text = '[launcher]\ntype = "command"\ncommand = ["true"]\nfollow = true\n'
    assert "launcher.follow" in str(load_error(tmp_path, text))


def test_a_status_url_takes_only_its_placeholders(tmp_path: Path) -> None:
    text = '[launcher]\nstatus_url = "http://h/{session}"\n'
    assert "launcher.status_url" in str(load_error(tmp_path, text))


# --------------------------------------------------------------------------- located errors


def test_a_typo_names_the_key_its_line_and_a_suggestion(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        [server]
        listen = "127.0.0.1:9999"

        [scheduler]
        catchup_rate = 2
        catchup_windw = "1h"
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)

    line = line_of(path, "catchup_windw")
    assert str(caught.value) == (
        f"{path}:{line}: scheduler.catchup_windw: unknown key (did you mean 'catchup_window'?)"
    )


def test_a_bad_value_in_the_nth_array_table_names_its_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        BASE
        + """
        [[schedules]]
        name = "one"
        prompt = "p"
        cron = "@daily"

        [[schedules]]
        name = "two"
        prompt = "p"
        notify_on = "sometimes"
        cron = "@daily"
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)

    (problem,) = caught.value.problems
    assert (problem.line, problem.key) == (line_of(path, "notify_on"), "schedules[1].notify_on")
    assert "'sometimes'" in problem.message


def test_every_problem_is_reported_one_line_each(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        [server]
        listen = "localhost"
        max_body_bytes = 0

        [logging]
        level = "loud"
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)

    lines = str(caught.value).splitlines()
    assert [line.split(": ")[0:2] for line in lines] == [
        [f"{path}:{line_of(path, 'listen')}", "server.listen"],
        [f"{path}:{line_of(path, 'max_body_bytes')}", "server.max_body_bytes"],
        [f"{path}:{line_of(path, 'level')}", "logging.level"],
    ]


def test_a_problem_without_its_own_line_points_at_the_section_header(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[launcher]\ntype = "command"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:1: launcher.command: ")


def test_a_missing_key_points_at_its_table(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[[orgs]]\nid = "org-a"\nname = "A"\n\n[[orgs]]\nname = "B"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:5: orgs[1].id: required key is missing"


def test_a_toml_syntax_error_reports_the_parser_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[server]\nlisten = "127.0.0.1:1"\nmax_body_bytes = \n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:3: invalid TOML: ")


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_lines_inside_multiline_strings_are_not_mistaken_for_keys(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        BASE
        + '''
        [[playbooks]]
        id = "playbook-x"
        title = "X"
        body = """
        macro = "looks like a key"
        [[playbooks]]
        """
        macro = "no-bang"
        ''',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert (problem.key, problem.line) == ("playbooks[0].macro", line_of(path, '"no-bang"'))


def test_source_path_is_not_a_key_of_the_file(tmp_path: Path) -> None:
    error = load_error(tmp_path, 'source_path = "/etc/other.toml"\n')
    assert ":1: source_path: unknown key" in str(error)


# --------------------------------------------------------------------------- strict types


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[agentscope]\nenabled = "yes"\n', "agentscope.enabled"),
        ('[server]\nmax_body_bytes = "5"\n', "server.max_body_bytes"),
        ('[server]\nmax_connections = "100"\n', "server.max_connections"),
        ("[server]\nmax_connections = 1.5\n", "server.max_connections"),
        ("[scheduler]\nmax_concurrent_launches = 2.0\n", "scheduler.max_concurrent_launches"),
        ("[scheduler]\ncatchup_rate = true\n", "scheduler.catchup_rate"),
        ('[launcher]\ncommand = "run-agent"\n', "launcher.command"),
        ('[[orgs]]\nid = "o"\nname = 5\n', "orgs[0].name"),
    ],
)
def test_values_are_never_coerced(tmp_path: Path, text: str, key: str) -> None:
    error = load_error(tmp_path, text)
    assert f": {key}: " in str(error)


def test_yes_is_not_a_boolean_and_the_message_shows_it(tmp_path: Path) -> None:
    error = load_error(tmp_path, '[agentscope]\nenabled = "yes"\n')
    assert str(error).endswith("agentscope.enabled: Input should be a valid boolean (got 'yes')")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[logging]\nformat = "xml"\n', "logging.format"),
        ('[launcher]\ntype = "ftp"\n', "launcher.type"),
        ('[launcher]\nurl = "ftp://example.org/x"\n', "launcher.url"),
        ('[launcher]\nurl = "http://h/{org}/sessions"\n', "launcher.url"),
        ('[notify]\nwebhook_url = "hooks.example.org"\n', "notify.webhook_url"),
        ("[notify]\nqueue_size = 0\n", "notify.queue_size"),
        ("[server]\nmax_connections = 0\n", "server.max_connections"),
        ("[scheduler]\ncatchup_rate = 0\n", "scheduler.catchup_rate"),
        ("[scheduler]\nmax_consecutive_failures = -1\n", "scheduler.max_consecutive_failures"),
        ('[server]\nlisten = "[::1]:99999"\n', "server.listen"),
        ('[server]\nlisten = "::1:8787"\n', "server.listen"),
        ('[[users]]\nid = "u"\norgs = []\npermissions = ["Admin"]\n', "users[0].permissions[0]"),
        ('[[orgs]]\nid = "has space"\nname = "x"\n', "orgs[0].id"),
    ],
)
def test_invalid_values_are_refused(tmp_path: Path, text: str, key: str) -> None:
    error = load_error(tmp_path, text)
    assert f": {key}: " in str(error)


def test_max_connections_changes_only_on_restart(tmp_path: Path) -> None:
    running = load_config(write_config(tmp_path, "[server]\nmax_connections = 100\n"))
    loaded = load_config(write_config(tmp_path, "[server]\nmax_connections = 5\n"))

    kept, refused = keep_restart_keys(running, loaded)

    assert refused == ["server.max_connections"]
    assert kept.server.max_connections == 100


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:8787", "127.0.0.1", 8787),
        ("[::1]:80", "::1", 80),
        ("localhost:0", "localhost", 0),
    ],
)
def test_listen_splits_into_host_and_port(
    tmp_path: Path, listen: str, host: str, port: int
) -> None:
    config = load_config(write_config(tmp_path, f'[server]\nlisten = "{listen}"\n'))
    assert (config.server.host, config.server.port) == (host, port)


def test_models_are_frozen(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, ""))
    with pytest.raises(ValueError):
        config.server.listen = "0.0.0.0:1"  # type: ignore[misc]


# --------------------------------------------------------------------------- paths


def test_a_relative_storage_path_is_taken_from_the_config_directory(tmp_path: Path) -> None:
    directory = tmp_path / "etc"
    directory.mkdir()
    path = write_config(directory, '[storage]\npath = "data/cron.db"\n')

    config = load_config(path)

    assert config.storage.path == directory / "data" / "cron.db"
    assert config.base_dir == directory


def test_an_absolute_storage_path_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "cron.db"
    config = load_config(write_config(tmp_path, f'[storage]\npath = "{target}"\n'))
    assert config.storage.path == target


def test_a_relative_config_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, "")
    monkeypatch.chdir(tmp_path)
    config = load_config("agentcron.toml")
    assert config.source_path == tmp_path / "agentcron.toml"
    assert config.storage.path == tmp_path / "agentcron.db"


# --------------------------------------------------------------------------- schedules


SCHEDULE = (
    BASE
    + """
[[schedules]]
name = "nightly"
prompt = "Tidy up."
"""
)


def test_schedules_and_playbooks_default_to_the_first_org(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            SCHEDULE
            + 'cron = "0 3 * * *"\n[[playbooks]]\nid = "playbook-p"\ntitle = "P"\nbody = "b"\n',
        )
    )
    assert config.schedules[0].org == "org-a"
    assert config.playbooks[0].org == "org-a"


def test_a_schedule_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, SCHEDULE + 'cron = "0 3 * * *"\n'))
    schedule = config.schedules[0]
    assert (schedule.agent, schedule.schedule_type, schedule.timezone) == (
        "devin",
        "recurring",
        "UTC",
    )
    assert (schedule.enabled, schedule.notify_on, schedule.overlap) == (True, "failure", "skip")
    assert (schedule.permission_mode, schedule.jitter, schedule.catchup_window) == (
        "dont_ask",
        0,
        None,
    )
    assert (schedule.stateful, schedule.bypass_approval, schedule.tags) == (False, False, None)


def test_a_one_time_schedule_reads_a_naive_datetime_as_utc(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            SCHEDULE
            + 'schedule_type = "one_time"\nscheduled_at = 2030-05-01T09:30:00\n'
            + 'start_at = "2030-01-01T00:00:00+02:00"\n',
        )
    )
    schedule = config.schedules[0]
    assert schedule.scheduled_at == datetime(2030, 5, 1, 9, 30, tzinfo=UTC)
    assert schedule.start_at == datetime(2029, 12, 31, 22, 0, tzinfo=UTC)
    assert schedule.start_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("", "schedules[0].cron"),
        ('cron = "0 0 30 2 *"\n', "schedules[0].cron"),
        ('cron = "61 * * * *"\n', "schedules[0].cron"),
        ('cron = "@daily"\ntimezone = "Mars/Olympus"\n', "schedules[0].timezone"),
        ('schedule_type = "one_time"\n', "schedules[0].scheduled_at"),
        ('schedule_type = "one_time"\nscheduled_at = 2030-01-01\n', "schedules[0].scheduled_at"),
        ('schedule_type = "one_time"\nscheduled_at = "2030-01-01"\n', "schedules[0].scheduled_at"),
        (
            'schedule_type = "one_time"\nscheduled_at = "2030-02-30T00:00Z"\n',
            "schedules[0].scheduled_at",
        ),
        (
            'schedule_type = "one_time"\nscheduled_at = 2030-01-01T00:00:00Z\ncron = "@daily"\n',
            "schedules[0].cron",
        ),
        ('cron = "@daily"\nscheduled_at = 2030-01-01T00:00:00Z\n', "schedules[0].scheduled_at"),
        (
            'cron = "@daily"\nstart_at = 2030-01-02T00:00:00Z\nend_at = 2030-01-01T00:00:00Z\n',
            "schedules[0].end_at",
        ),
        ('cron = "@daily"\njitter = "5x"\n', "schedules[0].jitter"),
        ('cron = "@daily"\noverlap = "queue"\n', "schedules[0].overlap"),
        ('cron = "@daily"\npermission_mode = "yolo"\n', "schedules[0].permission_mode"),
        ('cron = "@daily"\nplaybook_id = "daily"\n', "schedules[0].playbook_id"),
    ],
)
def test_invalid_schedules_name_the_key_and_its_line(tmp_path: Path, extra: str, key: str) -> None:
    path = write_config(tmp_path, SCHEDULE + extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.key == key
    field = key.rsplit(".", 1)[1]
    expected_line = (
        line_of(path, f"{field} =") if f"{field} =" in extra else line_of(path, "[[schedules]]")
    )
    assert problem.line == expected_line


@pytest.mark.parametrize(
    ("instant", "message"),
    [
        ("1969-12-31T23:59:59Z", "datetime must be between 1970-01-01 and 9999-01-01 (UTC)"),
        ("9999-06-01T00:00:00Z", "datetime must be between 1970-01-01 and 9999-01-01 (UTC)"),
        ("9999-12-31T23:00:00-05:00", "datetime is out of range"),
    ],
)
def test_an_instant_outside_the_api_range_is_refused_as_the_api_refuses_it(
    tmp_path: Path, instant: str, message: str
) -> None:
    path = write_config(tmp_path, SCHEDULE + f'cron = "@daily"\nend_at = {instant}\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert (problem.key, problem.line) == ("schedules[0].end_at", line_of(path, "end_at ="))
    assert problem.message == message


# --------------------------------------------------------------------------- cross-checks


SERVICE_USER = """
[[service_users]]
id = "{id}"
org = "{org}"
permissions = ["ManageOrgSchedules"]
token_sha256 = "{hash}"
"""


def service_user(id: str = "svc", org: str = "org-a", token: str = "cog_x") -> str:
    return SERVICE_USER.format(id=id, org=org, hash=sha256(token))


@pytest.mark.parametrize(
    ("extra", "key", "needle", "occurrence", "message"),
    [
        (
            '[[orgs]]\nid = "org-a"\nname = "again"\n',
            "orgs[1].id",
            'id = "org-a"',
            2,
            "duplicate org id",
        ),
        (
            '[[users]]\nid = "user-bob"\norgs = ["org-a", "org-z"]\npermissions = []\n',
            "users[1].orgs",
            '"org-z"',
            1,
            "unknown org 'org-z'",
        ),
        (service_user(org="org-z"), "service_users[0].org", 'org = "org-z"', 1, "unknown org"),
        (
            '[agentscope]\nenabled = true\norg = "org-z"\n',
            "agentscope.org",
            'org = "org-z"',
            1,
            "unknown org",
        ),
        (
            '[[playbooks]]\nid = "playbook-p"\norg = "org-z"\ntitle = "P"\nbody = ""\n',
            "playbooks[0].org",
            'org = "org-z"',
            1,
            "unknown org",
        ),
        (
            '[[schedules]]\norg = "org-z"\nname = "n"\nprompt = "p"\ncron = "@daily"\n',
            "schedules[0].org",
            'org = "org-z"',
            1,
            "unknown org",
        ),
        (
            '[[schedules]]\nname = "n"\nprompt = "p"\ncron = "@daily"\n' * 2,
            "schedules[1].name",
            'name = "n"',
            2,
            "duplicate schedule name 'n' in org 'org-a'",
        ),
        (
            '[[schedules]]\nname = "n"\nprompt = "p"\ncron = "@daily"\n'
            'run_as_user_id = "user-zed"\n',
            "schedules[0].run_as_user_id",
            "run_as_user_id",
            1,
            "unknown user 'user-zed'",
        ),
        (
            '[[orgs]]\nid = "org-b"\nname = "B"\n[[schedules]]\norg = "org-b"\nname = "n"\n'
            'prompt = "p"\ncron = "@daily"\nrun_as_user_id = "user-alice"\n',
            "schedules[0].run_as_user_id",
            "run_as_user_id",
            1,
            "not a member of org 'org-b'",
        ),
        (
            '[[users]]\nid = "user-bob"\norgs = ["org-a"]\npermissions = ["ManageOrgSchedules"]\n'
            '[[schedules]]\nname = "n"\nprompt = "p"\ncron = "@daily"\n'
            'run_as_user_id = "user-bob"\n',
            "schedules[0].run_as_user_id",
            "run_as_user_id",
            1,
            "lacks the UseDevinSessions permission",
        ),
        (
            service_user("svc-1", token="cog_same")
            + service_user("svc-2", token="cog_same").replace(
                sha256("cog_same"), sha256("cog_same").upper()
            ),
            "service_users[1].token_sha256",
            "token_sha256",
            2,
            "the same token as service_users[0]",
        ),
        (
            service_user("svc") + service_user("svc", token="cog_other"),
            "service_users[1].id",
            'id = "svc"',
            2,
            "duplicate service user id",
        ),
    ],
)
def test_cross_checks_name_the_key_and_its_line(
    tmp_path: Path, extra: str, key: str, needle: str, occurrence: int, message: str
) -> None:
    path = write_config(tmp_path, BASE + extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert (problem.key, problem.line) == (key, line_of(path, needle, occurrence))
    assert message in problem.message


def test_the_same_schedule_name_in_two_orgs_is_fine(tmp_path: Path) -> None:
    text = BASE + '[[orgs]]\nid = "org-b"\nname = "B"\n'
    for org in ("org-a", "org-b"):
        text += f'[[schedules]]\norg = "{org}"\nname = "n"\nprompt = "p"\ncron = "@daily"\n'
    config = load_config(write_config(tmp_path, text))
    assert [(s.org, s.name) for s in config.schedules] == [("org-a", "n"), ("org-b", "n")]


def test_agentscope_org_is_only_checked_when_enabled(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, '[agentscope]\norg = "org-nowhere"\n'))
    assert config.agentscope.org == "org-nowhere"


def test_all_cross_check_problems_are_reported_together(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        BASE + service_user(org="org-y") + service_user("svc2", org="org-z", token="cog_y"),
    )
    assert [problem.key for problem in error.problems] == [
        "service_users[0].org",
        "service_users[1].org",
    ]


# --------------------------------------------------------------------------- service-user tokens


def token_env_config(tmp_path: Path, name: str = "AGENTCRON_TEST_TOKEN") -> Path:
    return write_config(
        tmp_path,
        BASE
        + f"""
        [[service_users]]
        id = "svc"
        org = "org-a"
        permissions = ["ManageOrgSchedules"]
        token_env = "{name}"
        """,
    )


def test_the_storage_path_is_read_without_the_secrets_the_file_names(tmp_path: Path) -> None:
    path = token_env_config(tmp_path)  # AGENTCRON_TEST_TOKEN is not set
    path.write_text(path.read_text() + '\n[storage]\npath = "data/agentcron.db"\n')

    assert load_storage_path(path) == tmp_path / "data" / "agentcron.db"
    with pytest.raises(ConfigError):  # which the whole file needs
        load_config(path)
    assert load_storage_path(write_config(tmp_path, "")) == tmp_path / "agentcron.db"


def test_a_bad_storage_path_is_a_located_config_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, BASE + "\n[storage]\npath = 7\n")

    with pytest.raises(ConfigError) as caught:
        load_storage_path(path)

    (problem,) = caught.value.problems
    assert (problem.key, problem.line) == ("storage.path", line_of(path, "path = 7"))


def test_token_sha256_is_normalised_to_lowercase(tmp_path: Path) -> None:
    upper = sha256("cog_x").upper()
    config = load_config(
        write_config(tmp_path, BASE + service_user().replace(sha256("cog_x"), upper))
    )
    assert config.service_users[0].token_sha256 == sha256("cog_x")


def test_token_env_is_read_from_the_environment_and_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTCRON_TEST_TOKEN", "cog_from_env")
    config = load_config(token_env_config(tmp_path))
    (svc,) = config.service_users
    assert (svc.token_env, svc.token_sha256) == ("AGENTCRON_TEST_TOKEN", sha256("cog_from_env"))


def test_token_env_is_read_from_the_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "AGENTCRON_TEST_TOKEN").write_text("cog_from_file\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))

    config = load_config(token_env_config(tmp_path))

    assert config.service_users[0].token_sha256 == sha256("cog_from_file")


def test_a_missing_token_env_secret_names_the_key(tmp_path: Path) -> None:
    path = token_env_config(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert (problem.key, problem.line) == ("service_users[0].token_env", line_of(path, "token_env"))
    assert "AGENTCRON_TEST_TOKEN" in problem.message


@pytest.mark.parametrize(
    "tokens",
    [
        "",
        f'token_sha256 = "{"0" * 64}"\ntoken_env = "AGENTCRON_TEST_TOKEN"\n',
    ],
)
def test_a_service_user_needs_exactly_one_token_source(tmp_path: Path, tokens: str) -> None:
    text = BASE + '[[service_users]]\nid = "svc"\norg = "org-a"\npermissions = []\n' + tokens
    error = load_error(tmp_path, text)
    assert "exactly one of token_sha256 or token_env" in str(error)


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "0" * 63])
def test_token_sha256_must_be_64_hex_characters(tmp_path: Path, bad: str) -> None:
    error = load_error(tmp_path, BASE + service_user().replace(sha256("cog_x"), bad))
    assert "service_users[0].token_sha256: must be 64 hexadecimal characters" in str(error)


def test_the_model_never_holds_the_clear_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "cog_very_secret_value"
    monkeypatch.setenv("AGENTCRON_TEST_TOKEN", token)
    config = load_config(token_env_config(tmp_path))

    svc = config.service_users[0]
    assert token not in repr(config)
    assert token not in config.model_dump_json()
    assert all(token not in str(value) for value in vars(svc).values())
    assert set(ServiceUserConfig.model_fields) == {
        "id",
        "org",
        "permissions",
        "token_sha256",
        "token_env",
    }


# --------------------------------------------------------------------------- read_secret


def test_read_secret_prefers_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "AGENTCRON_TEST_TOKEN").write_text("from-file", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("AGENTCRON_TEST_TOKEN", "from-env")
    assert read_secret("AGENTCRON_TEST_TOKEN") == "from-env"


def test_read_secret_strips_exactly_one_trailing_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "AGENTCRON_TEST_TOKEN").write_text("line\n\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_secret("AGENTCRON_TEST_TOKEN") == "line\n"


def test_read_secret_is_none_when_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_secret("AGENTCRON_TEST_TOKEN") is None


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "", "1ABC"])
def test_read_secret_refuses_names_that_are_not_plain(name: str) -> None:
    with pytest.raises(ValueError):
        read_secret(name)


def test_a_template_prompt_that_does_not_parse_names_the_prompt_line(tmp_path: Path) -> None:
    text = SCHEDULE.replace('prompt = "', 'prompt_format = "template"\nprompt = "{% if %}')
    path = write_config(tmp_path, text + 'cron = "@daily"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.key == "schedules[0].prompt"
    assert problem.line == line_of(path, "prompt =")
    assert "template error at line 1" in str(problem)

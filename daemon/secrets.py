"""Secrets come from the environment or from systemd credentials, never from the config file.

The config names a secret (`token_env = "AGENTCRON_TOKEN"`); `read_secret` finds its value
in the process environment first, then in `$CREDENTIALS_DIRECTORY/<name>`, the directory
where systemd places the files of `LoadCredential=` / `SetCredential=`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# A name must be usable as an environment variable and as a plain file name: no path
# separators, so a credential lookup can never leave the credentials directory.
_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def is_secret_name(name: str) -> bool:
    """True if `name` can name a secret (letters, digits, `_`, `.`, `-`; not a digit first)."""
    return _SECRET_NAME.fullmatch(name) is not None


def read_secret(name: str) -> str | None:
    """The value of the secret `name`, or None if it is nowhere to be found.

    Looks at the environment variable `name` first (an empty variable counts as unset),
    then at the file `$CREDENTIALS_DIRECTORY/<name>`, read as UTF-8 with one trailing
    newline removed. Raises ValueError for a name that is not a valid secret name or a
    credential file that is not UTF-8, and OSError if the credential file exists but
    cannot be read.
    """
    if not is_secret_name(name):
        raise ValueError(f"{name!r} is not a valid secret name")
    value = os.environ.get(name)
    if value:
        return value
    return _read_credential(name)


def _read_credential(name: str) -> str | None:
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / name
    if not path.is_file():
        return None
    content = path.read_bytes().decode("utf-8")
    return _strip_one_newline(content)


def _strip_one_newline(content: str) -> str:
    if content.endswith("\r\n"):
        return content[:-2]
    if content.endswith("\n"):
        return content[:-1]
    return content

"""The one rule for names that become folders: run names, run ids, study and stage names.

Such a name is one path component inside the output folder, never a way out of it, so
``..``, ``/abs/path``, ``a/b``, an empty name and a NUL byte are all refused. Every place a
name enters (the config, ``--run-id``, ``--name``, the API) checks it with this module.
"""

from __future__ import annotations

import re
from typing import Any

from trainlab.errors import ConfigError

#: The rule as a regular expression (also published in the config's JSON Schema). ASCII only,
#: and a letter or digit first: no hidden files, no "..", nothing that reads as an option.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_NAME = re.compile(NAME_PATTERN)
#: Longest name allowed; far below the 255 bytes a file system allows for one path component.
MAX_NAME_LENGTH = 128
#: The rule in words, for error messages and help texts.
NAME_RULE = (
    f"letters, digits, '.', '_' and '-', starting with a letter or digit, at most {MAX_NAME_LENGTH} "
    "characters (it names one folder inside the output folder)"
)


def name_problem(value: Any) -> str | None:
    """What is wrong with ``value`` as a folder name, or None when it follows the rule."""
    if not isinstance(value, str):
        return f"must be a string of {NAME_RULE}"
    if not value:
        return f"is empty; use {NAME_RULE}"
    if len(value) > MAX_NAME_LENGTH or not _NAME.fullmatch(value):
        return f"not a safe folder name; use {NAME_RULE}"
    return None


def is_safe_name(value: Any) -> bool:
    """Whether ``value`` follows the name rule."""
    return name_problem(value) is None


def check_name(value: str, option: str) -> str:
    """Return ``value`` when it follows the name rule.

    Args:
        value: the name or id to check.
        option: where it came from, as the user wrote it (``--run-id``, ``run_id``, ``name``).

    Raises:
        ConfigError: naming ``option``, the value and the rule.
    """
    problem = name_problem(value)
    if problem is not None:
        raise ConfigError(f"{option} {value!r}: {problem}")
    return value


__all__ = ["MAX_NAME_LENGTH", "NAME_PATTERN", "NAME_RULE", "check_name", "is_safe_name", "name_problem"]

"""docs/cli.md keeps up with the parser: every command has a section naming every flag, every
exit code and setting is explained, and every ``--help`` works."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mountfs.cli.main import build_parser

from mountfs import errors

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
DSMOUNT = Path(sys.executable).with_name("dsmount")


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _sections() -> dict[str, str]:
    """``## dsmount <command>`` -> its text, up to the next heading of level 1 or 2."""
    out: dict[str, str] = {}
    parts = re.split(r"^(#{1,2} .*)$", DOC.read_text(), flags=re.MULTILINE)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        m = re.fullmatch(r"## dsmount (\S+)", heading.strip())
        if m:
            out[m.group(1)] = body
    return out


def test_every_command_has_a_section() -> None:
    assert sorted(_sections()) == sorted(_commands())


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_flag_is_in_its_section(command: str) -> None:
    section = _sections().get(command, "")
    for action in _commands()[command]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        names = [s for s in action.option_strings if s.startswith("--")] or [str(action.metavar)]
        for name in names:
            assert f"| `{name}`" in section, f"dsmount {command}: {name} is not in its section's flag table"


def test_global_options_exit_codes_and_environment_are_documented() -> None:
    text = DOC.read_text()
    for action in build_parser()._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        for name in action.option_strings:
            assert f"`{name}" in text, f"global option {name} is not documented"
    table = text.split("| code | meaning |", 1)[1].split("\n\n", 1)[0]
    codes = {int(c) for c in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)}
    raised = {
        cls.exit_code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.MountfsError)
    }
    assert raised | {0, 2, 70, 130} <= codes
    for var in (
        "DSMOUNT_HOME",
        "DSMOUNT_STORE",
        "DSMOUNT_CACHE_DIR",
        "DSMOUNT_CACHE_SIZE",
        "DSMOUNT_NO_PROGRESS",
    ):
        assert f"`{var}`" in text


@pytest.mark.parametrize("command", ["", *sorted(_commands())])
def test_help_exits_zero(command: str) -> None:
    argv = [str(DSMOUNT), *([command] if command else []), "--help"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"usage: dsmount {command}".rstrip())

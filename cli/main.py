"""The `dsmount` command: clearml-data's verbs and flags over mountfs.Dataset.

Each command module registers its subcommands; a command parses, calls the API and
prints. Errors of the MountfsError hierarchy become one line on stderr and the
exception's exit code, so a script can tell a missing dataset (3) from a state
conflict (4) or a broken store (5) without parsing text; anything else is a bug and
says so. The library is imported on first use, so `--help` and usage errors are fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mountfs.cli.output import error, one_line

from mountfs.errors import MountfsError

if TYPE_CHECKING:
    from mountfs.api.dataset import Dataset
    from mountfs.api.workspace import Workspace

GENERIC = 1
INTERNAL = 70
INTERRUPTED = 130
BROKEN_PIPE = 141


@dataclass
class Context:
    """What every command gets: parsed arguments and the workspace, opened on first use."""

    args: argparse.Namespace
    _workspace: Workspace | None = field(default=None, repr=False)

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            from mountfs.api.workspace import Workspace

            self._workspace = Workspace(store=self.args.store, home=self.args.home)
        return self._workspace

    def dataset(self, ref: str | None) -> Dataset:
        """A reference (id, prefix, project/name[@version]) or, when omitted, the last used dataset.

        Dataset.get re-reads a closed version's manifest, so a version deleted from another
        machine is reported as gone rather than served from this catalogue.
        """
        from mountfs.api.dataset import LAST_ID, Dataset

        ws = self.workspace
        ds = Dataset.get(dataset_id=ref, workspace=ws) if ref else Dataset.last_used(workspace=ws)
        ws.catalogue.set_state(LAST_ID, ds.id)
        return ds

    def resolve(self, ref: str) -> str:
        return self.workspace.resolve(ref)

    def close(self) -> None:
        if self._workspace is not None:
            self._workspace.close()


Command = Callable[[Context], int | None]


def command(sub: Any, name: str, func: Command, help: str, **kwargs: Any) -> argparse.ArgumentParser:
    """Add a subcommand whose handler is ``func``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help, **kwargs)
    parser.set_defaults(func=func)
    return parser


def show_args(args: argparse.Namespace) -> None:
    """clearml-data's --verbose echoes the arguments; on stderr, so stdout stays the result."""
    if getattr(args, "verbose", False):
        shown = {k: v for k, v in vars(args).items() if k != "func"}
        print(f"dsmount: arguments: {shown}", file=sys.stderr)


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_id(parser: argparse.ArgumentParser, *, last_used: bool = True) -> None:
    default = " (default: the last used dataset)" if last_used else ""
    parser.add_argument(
        "--id", metavar="REF", help=f"dataset version: id, id prefix or project/name[@version]{default}"
    )


COMMAND_MODULES = (
    "mountfs.cli.commands_build",
    "mountfs.cli.commands_read",
    "mountfs.cli.commands_admin",
    "mountfs.cli.commands_mount",
    "mountfs.cli.commands_ui",
)
"""Each module's ``register(sub)`` adds its subcommands: a new command module is one line here."""


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="dsmount",
        description="Versioned datasets as differential zip snapshots (clearml-data's verbs, no server).",
        epilog="References: a full id, a unique id prefix, or project/name[@version]. "
        "Every command, its output and exit codes: docs/cli.md.",
    )
    parser.add_argument(
        "--store", metavar="URL", help="store URL or folder (default: $DSMOUNT_STORE, else <home>/store)"
    )
    parser.add_argument(
        "--home",
        metavar="DIR",
        help="folder for local state (default: $DSMOUNT_HOME, else ~/.local/share/dsmount)",
    )
    # Its own dest: a subcommand's --verbose default would otherwise overwrite it.
    parser.add_argument(
        "-v", "--verbose", dest="global_verbose", action="store_true", help="tracebacks for internal errors"
    )
    parser.add_argument("--version", action="version", version=f"dsmount {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    parser.set_defaults(_commands=frozenset(sub.choices))
    return parser


_GLOBAL_WITH_VALUE = ("--store", "--home")


def expand_shorthand(argv: list[str], commands: frozenset[str]) -> list[str]:
    """``dsmount ID MOUNTPOINT`` means ``dsmount mount ID MOUNTPOINT``.

    Applies only when the first word after the global options is not a command and
    exactly two words follow, so a mistyped command still gets argparse's message.
    """
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_WITH_VALUE:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            break
    rest = argv[i:]
    if len(rest) >= 2 and rest[0] not in commands and not any(a.startswith("-") for a in rest[:2]):
        return [*argv[:i], "mount", *rest]
    return argv


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dsmount")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    argv = expand_shorthand(argv, parser.get_default("_commands"))
    args = parser.parse_args(argv)  # usage errors exit 2 from here
    verbose = bool(args.global_verbose or getattr(args, "verbose", False))
    # The API records this in the draft's operation log: a version remembers how it was built.
    os.environ["DSMOUNT_COMMAND"] = shlex.join(["dsmount", *argv])
    ctx = Context(args)
    try:
        return int(args.func(ctx) or 0)
    except MountfsError as exc:
        _traceback(verbose)
        error(str(exc) or type(exc).__name__)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dsmount: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # `dsmount list | head`: the reader left. Point stdout at /dev/null so the final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except OSError as exc:
        # This machine refused (permission, disk full, a file in the way): the user's to fix, not a bug.
        _traceback(verbose)
        error(f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc))
        return GENERIC
    except Exception as exc:
        _traceback(verbose)
        print(
            f"dsmount: internal error: {type(exc).__name__}: {one_line(str(exc))} "
            "(run with -v for the traceback)",
            file=sys.stderr,
        )
        return INTERNAL
    finally:
        with contextlib.suppress(Exception):  # closing must never hide the command's own result
            ctx.close()


def _traceback(verbose: bool) -> None:
    if verbose:
        import traceback

        traceback.print_exc()


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()

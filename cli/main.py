"""The `dsmount` command: clearml-data's verbs and flags over mountfs.Dataset.

Each command module registers its subcommands; a command parses, calls the API and
prints. Errors of the MountfsError hierarchy become one line on stderr and the
exception's exit code; anything else is a bug and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mountfs.errors import MountfsError

INTERNAL = 70
INTERRUPTED = 130


@dataclass
class Context:
    """What every command gets: parsed arguments and the workspace, opened on first use."""

    args: argparse.Namespace
    _workspace: Any = field(default=None, repr=False)

    @property
    def workspace(self) -> Any:
        if self._workspace is None:
            from mountfs.api.workspace import Workspace

            self._workspace = Workspace(store=self.args.store, home=self.args.home)
        return self._workspace

    def dataset(self, ref: str | None) -> Any:
        """A reference (id, prefix, project/name[@version]) or, when omitted, the last used dataset."""
        from mountfs.api.dataset import LAST_ID, Dataset

        ws = self.workspace
        ds = Dataset(ws, ws.resolve(ref)) if ref else Dataset.last_used(workspace=ws)
        ws.catalogue.set_state(LAST_ID, ds.id)
        return ds

    def resolve(self, ref: str) -> str:
        return str(self.workspace.resolve(ref))

    def close(self) -> None:
        if self._workspace is not None:
            self._workspace.close()


Command = Callable[[Context], int | None]


def command(sub: Any, name: str, func: Command, help: str, **kwargs: Any) -> argparse.ArgumentParser:
    """Add a subcommand whose handler is ``func``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help, **kwargs)
    parser.set_defaults(func=func)
    return parser


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--id", help="dataset version: id, id prefix or project/name[@version] (default: last used)"
    )


def build_parser() -> argparse.ArgumentParser:
    from mountfs.cli import commands_admin, commands_build, commands_read

    parser = argparse.ArgumentParser(
        prog="dsmount",
        description="Versioned datasets as differential zip snapshots (clearml-data's verbs, no server).",
    )
    parser.add_argument("--store", help="store URL (default: $DSMOUNT_STORE or $DSMOUNT_HOME/store)")
    parser.add_argument(
        "--home", help="folder for local state (default: $DSMOUNT_HOME or ~/.local/share/dsmount)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="tracebacks for internal errors")
    parser.add_argument("--version", action="version", version=f"dsmount {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (commands_build, commands_read, commands_admin):
        module.register(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dsmount")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ["DSMOUNT_COMMAND"] = shlex.join(["dsmount", *argv])
    ctx = Context(args)
    try:
        return int(args.func(ctx) or 0)
    except MountfsError as exc:
        print(f"dsmount: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dsmount: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(
            f"dsmount: internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)",
            file=sys.stderr,
        )
        return INTERNAL
    finally:
        with contextlib.suppress(Exception):  # closing must never hide the command's own result
            ctx.close()


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()

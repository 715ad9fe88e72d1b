"""Entry point of a detached mount daemon: ``python -m mountfs.daemon.main --notify-fd N``.

The CLI writes the MountConfig as JSON on stdin and waits for one line on the notify
pipe: ``ready``, or ``error <reason>``. Logs go to stdout, which the CLI points at the
mount's daemon.log (a foreground mount logs to the terminal or the container's stdout).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from mountfs.daemon.launch import log_format
from mountfs.daemon.server import MountConfig, run


def configure_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format=log_format(), stream=sys.stdout, force=True
    )
    logging.getLogger("pyfuse3").setLevel(logging.INFO if debug else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mountfs.daemon.main")
    parser.add_argument("--notify-fd", type=int, default=None)
    args = parser.parse_args(argv)
    config = MountConfig(**json.loads(sys.stdin.read()))
    configure_logging(config.debug)
    return run(config, args.notify_fd)


if __name__ == "__main__":
    sys.exit(main())

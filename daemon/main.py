"""Entry point of a detached mount daemon: ``python -m mountfs.daemon.main --notify-fd N``.

The CLI writes the MountConfig as JSON on stdin and waits for one line on the notify
pipe: ``ready``, or ``error <reason>``. Logs go to stdout, which the CLI points at the
mount's daemon.log (a foreground mount logs to the terminal or the container's stdout).
"""

from __future__ import annotations

import argparse
import json
import sys

from mountfs.daemon.logs import configure_logging
from mountfs.daemon.server import MountConfig, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mountfs.daemon.main")
    parser.add_argument("--notify-fd", type=int, default=None)
    args = parser.parse_args(argv)
    config = MountConfig(**json.loads(sys.stdin.read()))
    configure_logging(config.debug)
    return run(config, args.notify_fd)


if __name__ == "__main__":
    sys.exit(main())

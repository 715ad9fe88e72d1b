"""Log lines of the mount daemon: text for people, or one JSON object per line for collectors.

A foreground mount (a container's sidecar) logs to stdout, one line per event, which is
what Kubernetes and every log collector read. ``--log-format json`` makes each line an
object: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``,
the event's fields (``event``, ``mountpoint``, ``ready_s``, ...) and ``error`` with the
traceback when there is one. A detached daemon writes text to its daemon.log.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_RESERVED = ("time", "level", "logger", "message")


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: structured fields a JSON line carries beside the message."""
    return {"fields": values}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in the message are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            out.update({k: v for k, v in extra.items() if k not in _RESERVED})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(debug: bool, fmt: str = "text") -> None:
    """Log to stdout, replacing any earlier configuration (flushed after every line)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler], force=True)
    logging.getLogger("pyfuse3").setLevel(logging.INFO if debug else logging.WARNING)

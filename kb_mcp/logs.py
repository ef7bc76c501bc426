"""Logging: everything to stderr (under stdio, stdout *is* the wire), plain or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


def tame_redisvl() -> None:
    """Stop redisvl from hijacking logging, before any redisvl module is imported.

    redisvl 0.4 calls `coloredlogs.install(stream=sys.stdout)` for each module's logger at import; coloredlogs then
    *moves* the root logger's stream handler onto stdout, which corrupts an MCP stdio wire and drops our stderr
    handler. Replacing its `get_logger` with plain `logging.getLogger` keeps its loggers ordinary.
    """
    import redisvl.utils.log as redisvl_log

    def plain_logger(name: str, log_level: str = "info", fmt: str | None = None) -> logging.Logger:
        return logging.getLogger(name)

    redisvl_log.get_logger = plain_logger


def silence_stdout_loggers() -> None:
    """redisvl installs coloredlogs handlers on sys.stdout at import: remove every handler that writes there."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in list(logger.handlers):
            stream = getattr(handler, "stream", None)
            if stream is sys.stdout or stream is sys.__stdout__:
                logger.removeHandler(handler)
                logger.propagate = True
    # LlamaIndex's Redis store logs every query at INFO: noise on the hot path.
    logging.getLogger("llama_index.vector_stores.redis").setLevel(logging.WARNING)
    logging.getLogger("redisvl").setLevel(logging.WARNING)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra={"fields": {...}}` adds keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str = "INFO", fmt: str = "plain") -> None:
    """Root logging to stderr; called once by the CLI before anything else logs."""
    tame_redisvl()
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpx2", "httpcore", "mcp.server.streamable_http_manager", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    silence_stdout_loggers()

"""Logging set-up: plain lines on stderr, with every configured secret redacted."""

from __future__ import annotations

import logging

from wlm.config import Settings

__all__ = ["RedactingFilter", "configure_logging"]


class RedactingFilter(logging.Filter):
    """Rewrites each record's message so no secret value can reach a handler."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        for secret in self._secrets:
            message = message.replace(secret, "[redacted]")
        record.msg, record.args = message, None
        return True


def configure_logging(settings: Settings) -> None:
    """Install one stderr handler on the ``wlm`` logger (idempotent per process)."""
    logger = logging.getLogger("wlm")
    logger.setLevel(settings.log_level.upper())
    for handler in list(logger.handlers):
        if getattr(handler, "_wlm", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler()
    handler._wlm = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(settings.secrets()))
    logger.addHandler(handler)
    logger.propagate = False

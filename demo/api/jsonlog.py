"""JSON log lines for shop/api: one object per line (time, level, msg, the request fields), the
shape opslib's log runbook reads. Used by the app and by gunicorn's own logging."""

import datetime
import json
import logging

_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
           logging.ERROR: "error", logging.CRITICAL: "error"}
_FIELDS = ("request_id", "method", "path", "status", "latency_ms", "tenant")


class JsonFormatter(logging.Formatter):
    """time, level, msg, the request fields (null when not set), a record's ``fields`` dict,
    the logger's name when ``with_logger``, and the traceback as ``exc``."""

    def __init__(self, *args, with_logger=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.with_logger = with_logger

    def format(self, record):
        obj = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": _LEVELS.get(record.levelno, record.levelname.lower()),
            "msg": record.getMessage(),
        }
        for field in _FIELDS:
            obj[field] = getattr(record, field, None)
        obj.update(getattr(record, "fields", None) or {})
        if self.with_logger:
            obj["logger"] = record.name
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)

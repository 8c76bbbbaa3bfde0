"""gunicorn settings for shop/api: gthread workers, no access log (the app logs one JSON line
per request), gunicorn's own messages as JSON lines on stdout too."""

import datetime
import json
import logging
import os
import shutil

bind = "0.0.0.0:8000"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 20
keepalive = 5
preload_app = True
accesslog = None
errorlog = "-"
loglevel = "info"

# prometheus_client multiprocess mode: one fresh directory per server start.
_prom_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _prom_dir:
    shutil.rmtree(_prom_dir, ignore_errors=True)
    os.makedirs(_prom_dir, exist_ok=True)

_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
           logging.ERROR: "error", logging.CRITICAL: "error"}
_FIELDS = ("request_id", "method", "path", "status", "latency_ms", "tenant")


class JsonFormatter(logging.Formatter):
    """Same shape as the app's lines: time, level, msg and the request fields (null here)."""

    def format(self, record):
        obj = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": _LEVELS.get(record.levelno, record.levelname.lower()),
            "msg": record.getMessage(),
        }
        for field in _FIELDS:
            obj[field] = getattr(record, field, None)
        obj["logger"] = record.name
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonFormatter}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json",
                    "stream": "ext://sys.stdout"},
    },
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False,
                           "qualname": "gunicorn.error"},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False,
                            "qualname": "gunicorn.access"},
    },
}


def child_exit(server, worker):
    if _prom_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

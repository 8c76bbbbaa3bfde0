"""gunicorn settings for shop/api: gthread workers, no access log (the app logs one JSON line
per request), gunicorn's own messages as JSON lines on stdout too."""

import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from jsonlog import JsonFormatter  # noqa: E402

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

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonFormatter, "with_logger": True}},
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

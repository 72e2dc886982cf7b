"""Logging filter for the tracking server's access log (uvicorn.access): drops the requests of
the container's own healthcheck (``GET /health`` from 127.0.0.1, once a second), so `make logs`
shows the requests that clients made. Loaded by uvicorn_log_config.yaml."""

import logging


class DropHealthProbes(logging.Filter):
    """Keep every access-log record except the healthcheck's own probe."""

    def filter(self, record: logging.LogRecord) -> bool:
        """``False`` for a ``/health`` request from loopback, ``True`` for any other record.

        uvicorn's access records carry ``(client_addr, method, path, http_version, status)``
        as their arguments.
        """
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and args[2] == "/health":
            return not str(args[0]).startswith("127.0.0.1:")
        return True

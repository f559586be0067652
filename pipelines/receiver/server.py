"""Run the receiver under uvicorn (``wearhouse serve``)."""

from __future__ import annotations

import importlib.util
import logging
import logging.config

import uvicorn
from uvicorn.supervisors import Multiprocess

from pipelines.receiver.app import ReceiverApp
from pipelines.receiver.config import ReceiverConfig
from pipelines.receiver.landing import receiver_lock

log = logging.getLogger("wearhouse.receiver")

# Connections served at once; more get 503 (each holds at most ~1 MiB of body in memory).
LIMIT_CONCURRENCY = 256
# Longer than a reverse proxy's idle upstream keep-alive (nginx: 60 s), so the proxy, not us,
# closes idle connections and never sends a request on one we are closing.
KEEP_ALIVE_S = 75


# One line per request on stderr (no bodies, no headers), in every worker process too.
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "line",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "wearhouse.receiver": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


def uvicorn_config(app: ReceiverApp, host: str, port: int, **overrides) -> uvicorn.Config:
    options = {
        "host": host,
        "port": port,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        # Forwarded-for is believed only from the configured trusted proxies, by the app.
        "proxy_headers": False,
        "server_header": False,
        "access_log": False,  # the app logs one line per request, without the query string
        "log_config": None,
        "lifespan": "on",
        "limit_concurrency": LIMIT_CONCURRENCY,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "ws": "none",
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def serve(config: ReceiverConfig, host: str, port: int) -> int:
    """Serve until interrupted. At start, temp files a killed receiver left are removed."""
    logging.config.dictConfig(LOG_CONFIG)
    # A live request's temp file is younger than the body timeout: older ones are debris.
    with receiver_lock(config.landing, config.body_timeout_s + 60) as removed:
        if removed:
            log.warning("removed %d unfinished temp files of an earlier receiver", len(removed))
        app = ReceiverApp(config)
        options = uvicorn_config(app, host, port, log_config=LOG_CONFIG, workers=config.workers)
        log.info(
            "receiving into %s on http://%s:%d (%d process%s, limit %d bytes, allowlist %s, "
            "client id %s)",
            config.landing / "garmin",
            host,
            port,
            config.workers,
            "es" if config.workers > 1 else "",
            config.max_body_bytes,
            ", ".join(map(str, config.allow)) or "off",
            "checked" if config.client_id else "not checked",
        )
        if config.workers > 1:
            # What uvicorn.run does for workers, with the app object (it pickles by config).
            Multiprocess(options, sockets=[options.bind_socket()]).run()
            return 0
        server = uvicorn.Server(options)
        server.run()
        return 0 if server.started else 1

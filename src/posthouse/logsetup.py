"""Process logging: standard error, a file, or syslog (facility mail), one line per event.

Lines follow sendmail's style (``QUEUEID: from=<...>, size=..., nrcpts=...``,
``QUEUEID: to=<...>, delay=..., mailer=..., stat=Sent``) so existing log tools
can read them; the syslog tag is ``posthouse``.  NOTICE (authentication
results, 12.4.5) is logged at INFO with the word NOTICE in the message.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

from posthouse.config.schema import ServerSection

SYSLOG_SOCKET = "/dev/log"


def setup_logging(server: ServerSection) -> str:
    """Install the configured handler on the root logger; returns a description of it."""
    level = {"notice": logging.INFO}.get(
        server.log_level, getattr(logging, server.log_level.upper())
    )
    handler: logging.Handler
    where: str
    if server.syslog and os.path.exists(SYSLOG_SOCKET):
        facility = logging.handlers.SysLogHandler.facility_names.get(
            server.syslog_facility, logging.handlers.SysLogHandler.LOG_MAIL
        )
        handler = logging.handlers.SysLogHandler(address=SYSLOG_SOCKET, facility=facility)
        handler.setFormatter(logging.Formatter("posthouse[%(process)d]: %(message)s"))
        where = f"syslog facility {server.syslog_facility}"
    elif server.log_file:
        handler = logging.FileHandler(server.log_file)
        where = server.log_file
    else:
        handler = logging.StreamHandler(sys.stderr)
        where = "standard error"
    if not isinstance(handler, logging.handlers.SysLogHandler):
        handler.setFormatter(logging.Formatter("%(asctime)s posthouse[%(process)d]: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if server.syslog and not isinstance(handler, logging.handlers.SysLogHandler):
        logging.getLogger("posthouse").warning(
            "syslog requested but %s does not exist; logging to %s", SYSLOG_SOCKET, where
        )
    return where

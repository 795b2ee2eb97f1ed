"""Process logging: standard error, a file, or syslog (facility mail), one line per event.

Lines follow sendmail's style (``QUEUEID: from=<...>, size=..., nrcpts=...``,
``QUEUEID: to=<...>, delay=..., mailer=..., stat=Sent``) so existing log tools
can read them; the syslog tag is ``posthouse``.  NOTICE (authentication
results, 12.4.5) is logged at INFO with the word NOTICE in the message.

Lines are formatted and written by a thread of their own (:class:`LogThread`), not
by the event loop that logs them, in batches (a busy server wakes it about fifty times a
second, not twice per message); ``flush()`` on the root logger's handler waits
until every line logged so far is written, and the interpreter's exit does too.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import queue
import sys
import threading

from posthouse.config.schema import ServerSection

SYSLOG_SOCKET = "/dev/log"


#: Seconds the log thread gathers lines after writing some: a busy server wakes it at most
#: 1/LINGER times a second (not once per line), and a line is written at most this late.
LINGER = 0.02
_STOP = object()  # tells the thread to end once it has written what came before


class LogThread(logging.handlers.QueueHandler):
    """Hands each record to a thread that formats and writes it with *target*.

    The record goes as it is (its arguments are formatted later, on the thread).  The thread
    writes every record waiting, then gathers for :data:`LINGER` seconds before it looks
    again.  A thread does not survive ``os.fork()``: it is stopped before a fork (writing
    every line queued) and started again in both processes.  :meth:`flush` waits until the
    lines logged so far are written; :meth:`close` (called by ``logging.shutdown()`` at
    exit) stops it."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(queue.SimpleQueue())
        self.target = target
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._closed = False
        self._start()
        os.register_at_fork(
            before=self._stop, after_in_parent=self._start, after_in_child=self._start
        )

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record

    def flush(self) -> None:
        self._stop()
        self._start()

    def close(self) -> None:
        self._stop()
        self._closed = True
        self.target.close()
        super().close()

    def _start(self) -> None:
        if self._closed or self._thread is not None:
            return
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._write_lines, args=(self._stopping,), name="posthouse-log", daemon=True
        )
        self._thread.start()

    def _stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()  # no more gathering
            self.queue.put_nowait(_STOP)
            thread.join()  # writes what is queued, then ends the thread
        self.target.flush()

    def _write_lines(self, stopping: threading.Event) -> None:
        records: queue.SimpleQueue[logging.LogRecord | object] = self.queue  # type: ignore[assignment]
        while True:
            batch = [records.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(records.get_nowait())
            for record in batch:
                if isinstance(record, logging.LogRecord):
                    self.target.handle(record)
            if _STOP in batch:
                return
            stopping.wait(LINGER)


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
    for previous in root.handlers:
        if isinstance(previous, LogThread):
            previous.close()
    root.handlers[:] = [LogThread(handler)]
    root.setLevel(level)
    if server.syslog and not isinstance(handler, logging.handlers.SysLogHandler):
        logging.getLogger("posthouse").warning(
            "syslog requested but %s does not exist; logging to %s", SYSLOG_SOCKET, where
        )
    return where

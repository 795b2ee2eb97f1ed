#!/usr/bin/env python3
"""Does delivering 100 due messages cost more when the queue holds more deferred ones?

For every queue size N (default 1,000, 10,000 and 100,000) a fresh posthouse data
directory gets N queue entries written directly in the documented on-disk format
(``ID.df`` + ``ID.qf``, see ``src/posthouse/mta/queue/store.py``): N-100 deferred ones
whose ``next_attempt`` is 30 days ahead (recipients ``farK@sink.test``) and 100
deferred ones whose ``next_attempt`` has passed (recipients ``dueonlyK@sink.test``),
spread evenly through the queue's id order.  ``sink.test`` is routed to an asyncio
SMTP sink (the one of ``relay_vs_postfix.py``) that counts what it receives.  Then:

daemon
    ``posthouse serve`` is started (1 worker, ``log_level = "info"``) and timed:
    *listen* = until it prints ``posthouse: listening smtp on ...``;
    *scan* = from then until its log says ``queue scan found N message(s)`` (the scheduler
    reads every control file once at start-up before it schedules anything);
    *deliver* = from the end of the scan until the sink has the 100 due messages;
    *total* = from the process start until the sink has them.
sendmail -qR
    The daemon is stopped, the 100 due entries are written again, and
    ``posthouse sendmail -qRdueonly`` (a queue run of only the messages with a recipient
    containing ``dueonly``) is timed from start to exit; the sink must count 100.

Everything is bounded (``--step-timeout`` per step, ``--timeout`` in all; the sizes
are processed in increasing order and skipped when the time is up).  Does not need
root and does not touch Postfix.

Example::

    .venv/bin/python benchmarks/queue_scaling.py --sizes 1000,10000,100000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from relay_vs_postfix import PosthouseDaemon, Sink, parse_list  # noqa: E402

from posthouse.mta.queue.ids import new_queue_id  # noqa: E402

DUE = 100
DUE_MARK = "dueonly"
LAST_ERROR = "4.4.1 Connection refused by 127.0.0.1"


def message_bytes(n: int, size: int) -> bytes:
    head = (
        f"Received: from client.test (127.0.0.1) by mail.test with ESMTP id {n}\r\n"
        f"From: sender@local.test\r\nTo: rcpt{n}@sink.test\r\n"
        f"Subject: queued message {n}\r\nMessage-ID: <{n}.bench@local.test>\r\n\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    body = line * max(0, (size - len(head)) // len(line))
    return head + body


def control_bytes(
    queue_id: str, recipient: str, next_attempt: float, received_at: float, size: int
) -> bytes:
    """A version-1 control file of a message deferred once (the documented JSON)."""
    doc = {
        "v": 1,
        "queue_id": queue_id,
        "sender": "sender@local.test",
        "recipients": [
            {
                "address": recipient,
                "original": recipient,
                "status": "deferred",
                "attempts": 1,
                "last_error": LAST_ERROR,
                "next_attempt": next_attempt,
            }
        ],
        "received_at": received_at,
        "size": size,
        "client_address": "127.0.0.1",
        "helo": "client.test",
        "auth_user": None,
        "body": None,
        "smtputf8": False,
        "protocol": "ESMTP",
        "extra": {},
    }
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def write_entry(queue_dir: Path, recipient: str, next_attempt: float, data: bytes) -> str:
    """Write ``ID.df`` then ``ID.qf`` (no fsync: this is set-up, not a durability test)."""
    queue_id = new_queue_id()
    received_at = time.time() - 3600.0
    with open(queue_dir / f"{queue_id}.df", "wb") as f:
        f.write(data)
    with open(queue_dir / f"{queue_id}.qf", "wb") as f:
        f.write(control_bytes(queue_id, recipient, next_attempt, received_at, len(data)))
    return queue_id


def fill_queue(
    queue_dir: Path, total: int, due: int, size: int, *, far: float = 30 * 86400.0
) -> float:
    """``total`` deferred entries, ``due`` of them due now (spread evenly); returns seconds."""
    t0 = time.monotonic()
    queue_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(queue_dir, 0o775)
    now = time.time()
    data = message_bytes(0, size)
    every = max(1, total // due) if due else 0
    made_due = 0
    for n in range(total):
        if due and made_due < due and n % every == every // 2:
            write_entry(queue_dir, f"{DUE_MARK}{made_due}@sink.test", now - 60.0, data)
            made_due += 1
        else:
            write_entry(queue_dir, f"far{n}@sink.test", now + far, data)
    return time.monotonic() - t0


def write_due(queue_dir: Path, due: int, size: int) -> None:
    data = message_bytes(0, size)
    now = time.time()
    for k in range(due):
        write_entry(queue_dir, f"{DUE_MARK}{k}@sink.test", now - 60.0, data)


def wait_for_log(path: Path, needle: str, timeout: float) -> float | None:
    """Poll the log file until a line contains ``needle``; the monotonic time it was seen."""
    deadline = time.monotonic() + timeout
    offset = 0
    tail = ""
    while time.monotonic() < deadline:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                f.seek(offset)
                chunk = f.read()
                offset = f.tell()
        except FileNotFoundError:
            chunk = ""
        if chunk:
            text = tail + chunk
            if needle in text:
                return time.monotonic()
            tail = text[-200:]
        time.sleep(0.005)
    return None


@dataclass
class Result:
    n: int
    fill: float = 0.0
    listen: float = 0.0
    scan: float = 0.0
    deliver: float = 0.0
    total: float = 0.0
    daemon_count: int = 0
    qr: float = 0.0
    qr_count: int = 0
    note: str = ""


def measure(n: int, sink: Sink, args: argparse.Namespace, root: Path) -> Result:
    result = Result(n)
    daemon = PosthouseDaemon(
        root, sink.port, workers=1, queue=f"retry_seconds = {args.retry_seconds}"
    )
    text = daemon.config.read_text().replace('log_level = "warning"', 'log_level = "info"')
    daemon.config.write_text(text)
    result.fill = fill_queue(daemon.queue_dir, n, DUE, args.size)
    sink.reset()
    t0 = time.monotonic()
    try:
        result.listen = daemon.start(timeout=args.step_timeout, settle=False)
        t_listen = t0 + result.listen
        seen = wait_for_log(daemon.log, "queue scan found", args.step_timeout)
        if seen is None:
            result.note = "no scan line in the log"
        else:
            result.scan = seen - t_listen
        if sink.wait_for(DUE, args.step_timeout):
            t_done = time.monotonic()
            result.total = t_done - t0
            if seen is not None:
                result.deliver = t_done - seen
        else:
            result.note += f" daemon delivered only {sink.count}"
        result.daemon_count = sink.count
    finally:
        daemon.stop()
    remaining = len(list(daemon.queue_dir.glob("*.qf")))
    if remaining != n - DUE:
        result.note += f" queue has {remaining} entries after the daemon (expected {n - DUE})"
    write_due(daemon.queue_dir, DUE, args.size)
    sink.reset()
    t0 = time.monotonic()
    proc = daemon.run("sendmail", f"-qR{DUE_MARK}", timeout=args.step_timeout)
    result.qr = time.monotonic() - t0
    sink.wait_for(DUE, 5.0)
    result.qr_count = sink.count
    if proc.returncode != 0:
        result.note += f" sendmail -qR exit {proc.returncode}: {proc.stderr[-200:]}"
    return result


def table(results: list[Result]) -> str:
    head = (
        f"{'N queued':>9} | {'fill s':>7} | {'listen s':>8} {'scan s':>7} {'deliver s':>9} "
        f"{'total s':>8} {'sink':>5} | {'-qR s':>7} {'sink':>5} | notes"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.n:>9} | {r.fill:>7.1f} | {r.listen:>8.2f} {r.scan:>7.2f} {r.deliver:>9.2f} "
            f"{r.total:>8.2f} {r.daemon_count:>5} | {r.qr:>7.2f} {r.qr_count:>5} | {r.note.strip()}"
        )
    base = results[0] if results else None
    if base is not None and len(results) > 1:
        lines.append("")
        lines.append(f"growth relative to N={base.n} (x):")
        for r in results[1:]:

            def g(a: float, b: float) -> str:
                return f"{a / b:.1f}" if a and b else "-"

            lines.append(
                f"  N={r.n}: scan {g(r.scan, base.scan)}, deliver {g(r.deliver, base.deliver)}, "
                f"total {g(r.total, base.total)}, -qR {g(r.qr, base.qr)}"
                f"   (N grew {r.n / base.n:.0f}x)"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_list, default=[1000, 10000, 100000])
    parser.add_argument("--size", type=int, default=1000, help="bytes per queued message")
    parser.add_argument("--retry-seconds", type=float, default=60.0)
    parser.add_argument("--step-timeout", type=float, default=300.0)
    parser.add_argument("--timeout", type=float, default=1500.0, help="seconds in all")
    parser.add_argument("--keep-data", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    deadline = time.monotonic() + args.timeout
    sink = Sink().start()
    results: list[Result] = []
    top = Path(tempfile.mkdtemp(prefix="phqscale-"))
    try:
        for n in sorted(args.sizes):
            if time.monotonic() >= deadline:
                print(f"skipped N={n}: overall timeout")
                continue
            root = top / f"n{n}"
            root.mkdir()
            r = measure(n, sink, args, root)
            results.append(r)
            print(
                f"N={n}: fill {r.fill:.1f}s listen {r.listen:.2f}s scan {r.scan:.2f}s "
                f"deliver {r.deliver:.2f}s total {r.total:.2f}s (sink {r.daemon_count}); "
                f"-qR {r.qr:.2f}s (sink {r.qr_count}) {r.note}",
                flush=True,
            )
            if not args.keep_data:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        sink.stop()
        if not args.keep_data:
            shutil.rmtree(top, ignore_errors=True)
    print()
    print(f"{DUE} due messages among N deferred ones ({args.size}-byte messages), 1 worker")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The console: plain progress lines always; on a terminal, a status line with each running
stage's elapsed and expected time and the last line its command printed."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

from vzstages.console import ConsoleHandler


@contextlib.contextmanager
def attached(handler: ConsoleHandler) -> Iterator[tuple[logging.Logger, logging.Logger]]:
    """The progress and host loggers, writing to `handler` only, for the block."""
    progress, host = logging.getLogger("vzstages.progress"), logging.getLogger("vzstages.host")
    for logger in (progress, host):
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    try:
        yield progress, host
    finally:
        for logger in (progress, host):
            logger.removeHandler(handler)
            logger.propagate = True


def records(handler: ConsoleHandler) -> None:
    with attached(handler) as (progress, host):
        progress.info("os       running 3 tasks", extra={"stage": ("os", "start", 30.0)})
        host.debug("  I: Unpacking libc6...")
        host.info("$ debootstrap ...")  # a command line: not a progress line
        handler._clear()
        handler._draw()
        progress.info("os       done in 20.0s", extra={"stage": ("os", "end", None)})


def test_a_terminal_gets_a_live_status_line():
    stream = io.StringIO()
    handler = ConsoleHandler(stream, live=True)
    records(handler)
    out = stream.getvalue()
    assert "os       running 3 tasks\n" in out and "os       done in 20.0s\n" in out
    assert "os 0s of ~30s  I: Unpacking libc6..." in out
    assert "$ debootstrap" not in out
    assert handler.running == {}


def test_a_log_gets_plain_lines_only():
    stream = io.StringIO()
    records(ConsoleHandler(stream, live=False))
    assert stream.getvalue() == "os       running 3 tasks\nos       done in 20.0s\n"


def test_a_log_gets_a_heartbeat_while_a_stage_is_silent(monkeypatch):
    """Without a terminal, a long apt run still says it is alive, with its last line."""
    import time

    from vzstages import console

    monkeypatch.setattr(console, "HEARTBEAT", 0.3)
    stream = io.StringIO()
    handler = ConsoleHandler(stream, live=False)
    with attached(handler) as (progress, host):
        progress.info("packages running 9 tasks", extra={"stage": ("packages", "start", 40.0)})
        host.debug("Setting up openssh-server ...")
        time.sleep(1.0)
        assert "packages still running after" in stream.getvalue()
        assert "Setting up openssh-server ..." in stream.getvalue()
        progress.info("packages done in 1.0s", extra={"stage": ("packages", "end", None)})
        quiet = stream.getvalue()
        time.sleep(0.8)
        assert stream.getvalue() == quiet  # nothing running, nothing said

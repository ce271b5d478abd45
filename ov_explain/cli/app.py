"""The ``ov-explain`` command line: the only module that imports everything and talks to the terminal.

Exit status: 0 all good; 1 some inputs failed (the others were processed); 2 bad usage or a setup
error (model, preprocessing spec, labels, device) before anything ran; 3 an unexpected error (a bug:
one line, and the full trace in a file it names); 130 / 143 interrupted by SIGINT / SIGTERM (an audit
records what was finished first: re-run to resume).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from ov_explain import __version__
from ov_explain.core.errors import OvExplainError, one_line

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_PARTIAL, EXIT_SETUP = 0, 1, 2
EXIT_UNEXPECTED = 3
EXIT_GATE = 4  # drift --fail-on: a limit was crossed
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM


class _OneLineFormatter(logging.Formatter):
    """``level: message``; with ``traces`` (-vv) a record's exception trace follows it."""

    def __init__(self, traces: bool = False) -> None:
        super().__init__()
        self.traces = traces

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        return line + "\n" + self.formatException(record.exc_info) if self.traces and record.exc_info else line


def _configure_logging(verbose: int, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter(traces=verbose > 1 and not quiet))
    root = logging.getLogger("ov_explain")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose > 1 else
                  logging.INFO if verbose else logging.WARNING)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so work in flight ends as cleanly as on Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


@contextmanager
def _stop_on_signals() -> Iterator[tuple[threading.Event, list[int]]]:
    """While inside, SIGINT / SIGTERM set an event the audit checks between images (it finishes those
    in flight) and land in the list; a second signal interrupts at once. The old handlers come back after."""
    stop, received = threading.Event(), []

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        received.append(signum)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop, received
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _interrupt_status(cause: BaseException) -> int:
    """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    return EXIT_TERMINATED if isinstance(cause, Terminated) else EXIT_INTERRUPTED


def _save_trace() -> str:
    """Write the current exception's traceback to a file; where it went, for the user's one line (or why it
    could not be written: the temp folder is full or read-only)."""
    import tempfile
    import traceback

    try:
        with tempfile.NamedTemporaryFile("w", prefix="ov-explain-error-", suffix=".log", delete=False,
                                         encoding="utf-8") as handle:
            traceback.print_exc(file=handle)
    except OSError as exc:
        return f"no trace file: {one_line(exc)}"
    return f"full trace in {handle.name}"


def run_stoppable(bar: Any, work: Callable[[threading.Event], Any]) -> Any:
    """Run a dataset command's work with the signal handlers of :func:`_stop_on_signals`: a setup error
    is one line (exit 2); a signal ends it with the count of images saved and 128 + signal."""
    from ov_explain.runs.engine import RunInterrupted

    with _stop_on_signals() as (stop, signals):
        try:
            result = work(stop)
        except OvExplainError as exc:
            bar.close()
            fail(str(exc))
        except RunInterrupted as stopped:
            bar.close()
            click.echo(f"interrupted: {stopped.saved} of {stopped.total} images saved in {stopped.out_dir}; run the "
                       "same command to resume", err=True)
            sys.exit(128 + signals[0])
    bar.close()
    return result


def fail(message: str, code: int = EXIT_SETUP) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def openvino_core() -> Any:
    import openvino as ov

    return ov.Core()


class _Commands(click.Group):
    """The command group: SIGTERM ends work as Ctrl-C does, and either exits 128 + signal, quietly."""

    def invoke(self, ctx: click.Context) -> Any:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as stop:
            click.echo("interrupted", err=True)
            sys.exit(_interrupt_status(stop))
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:  # the reader went away (`| head`): nothing is wrong, and nothing more to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_OK)
        except Exception as exc:  # a bug: one line for the user, the whole trace in a file
            trace = _save_trace()
            logger.debug("unexpected error", exc_info=True)
            click.echo(f"error: unexpected {type(exc).__name__}: {one_line(exc)} ({trace}; -vv also prints it)",
                       err=True)
            sys.exit(EXIT_UNEXPECTED)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ov-explain")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
def main(verbose: int, quiet: bool) -> None:
    """Predict, explain and audit image classifiers on OpenVINO (CPU / GPU / NPU)."""
    _configure_logging(verbose, quiet)


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 image``, ``7 images``: a count with its noun, for the lines a command prints."""
    return f"{count} {noun}" if count == 1 else f"{count} {plural or noun + 's'}"

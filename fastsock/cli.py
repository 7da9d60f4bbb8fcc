"""``python -m fastsock``: the limits report, the connection table and the example servers.

    python -m fastsock limits [--json] [--raise]
    python -m fastsock stat [--pid P | --port N] [--state S] [--server URL] [--json] [--watch SECONDS]
    python -m fastsock serve APP [options]      (python -m fastsock serve --help lists apps)
    python -m fastsock connect URL [options]   (interactive client: fastsock/cli_connect.py)

Exit codes: 0 success (including a server stopped by SIGINT/SIGTERM), 1 a
runtime failure (port in use, permission denied, an app that cannot load),
2 bad usage (unknown command, app or option, bad host or port), 130 when
interrupted before a server started. Every failure is ONE line on stderr,
``fastsock: error: <what is wrong>``, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import math
import sys
import time
from typing import NoReturn, Sequence

from fastsock import __version__
from fastsock.apps import APPS, load_app
from fastsock.apps._common import EXIT_RUNTIME, EXIT_USAGE, AppError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (exit 2), no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"fastsock: error: {message} (see: {self.prog} --help)\n")


def _app_descriptions() -> dict[str, str]:
    """One help line per app. Imports each app module (only for --help)."""
    out: dict[str, str] = {}
    for name in APPS:
        try:
            out[name] = str(getattr(load_app(name), "DESCRIPTION", ""))
        except Exception as exc:  # a broken app must not break --help for the others
            out[name] = f"(cannot load: {type(exc).__name__}: {exc})"
    return out


def _chosen_app(argv: Sequence[str]) -> str | None:
    """The APP of ``serve APP ...`` (first non-option word after serve), if any."""
    try:
        at = list(argv).index("serve")
    except ValueError:
        return None
    for word in argv[at + 1:]:
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The full parser. Only the app named in ``argv`` is imported (for its options)."""
    parser = _Parser(prog="python -m fastsock",
                     description="fastsock: thousands of TCP, UDP and WebSocket connections "
                                 "on one thread.")
    parser.add_argument("--version", action="version", version=f"fastsock {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    lim = commands.add_parser(
        "limits", help="descriptor and socket limits, and how many connections they allow",
        description="Print the descriptor and socket limits of this process and machine, "
                    "how many connections they allow, which binds first and how to raise it.")
    lim.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lim.add_argument("--raise", dest="raise_nofile", action="store_true",
                     help="raise the soft descriptor limit to the hard one first (this process "
                          "only; shows what a server started with --raise-nofile gets)")

    st = commands.add_parser(
        "stat", help="the live connection table (netstat view) of a process or port",
        description="List the TCP and UDP sockets of a process or port from the kernel "
                    "(/proc/net), one row each (for listeners the accept queue and "
                    "backlog), then counts by state with what each means, by local "
                    "port, and descriptor use against the limit.")
    st.add_argument("--pid", type=_pid, metavar="P",
                    help="sockets this process holds, plus the TIME_WAIT, closing and "
                         "not-yet-accepted connections on the ports it listens on")
    st.add_argument("--port", type=_stat_port, action="append", default=[], metavar="N",
                    help="sockets bound to local port N (repeat for several)")
    st.add_argument("--peer-port", type=_stat_port, action="append", default=[], metavar="N",
                    help="sockets connected to port N elsewhere: the client side (repeatable)")
    st.add_argument("--state", type=_states, action="append", default=[], metavar="S",
                    help="only these states, e.g. TIME_WAIT or time-wait,close-wait "
                         "(repeatable)")
    st.add_argument("--server", metavar="URL",
                    help="also ask a running fastsock server for its own bookkeeping "
                         "(WebSocket state, age, messages and bytes, buffered) and add it "
                         "to its rows: URL is its metrics URL, e.g. "
                         "http://127.0.0.1:8765/metrics (served with --metrics or "
                         "--metrics-port); without --pid/--port, its ports are shown")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.add_argument("--watch", type=_seconds, metavar="SECONDS",
                    help="print again every SECONDS until Ctrl-C (--json: one object a line)")

    from fastsock import cli_connect
    conn = commands.add_parser("connect", help=cli_connect.DESCRIPTION,
                               description=cli_connect.__doc__.split("\n\n")[1]
                               if cli_connect.__doc__ else None)
    cli_connect.add_arguments(conn)
    conn.set_defaults(_run=cli_connect.run)

    serve = commands.add_parser(
        "serve", help="run an example server (serve --help lists them)",
        description="Run an example server until SIGINT/SIGTERM. It prints one line "
                    "'fastsock APP listening on SCHEME://HOST:PORT' on stdout once it "
                    "accepts connections; logs (the limits summary first) go to stderr.")
    apps = serve.add_subparsers(dest="app", metavar="APP", parser_class=_Parser)
    apps.required = True
    chosen = _chosen_app(argv)
    described = _app_descriptions() if chosen is None and any(
        a in ("-h", "--help") for a in argv) else {}
    for name in APPS:
        if name == chosen:
            module = load_app(name)  # errors surface in main() as one line
            sub = apps.add_parser(name, help=getattr(module, "DESCRIPTION", None),
                                  description=getattr(module, "DESCRIPTION", None))
            module.add_arguments(sub)
            sub.set_defaults(_run=module.run)
        else:
            apps.add_parser(name, help=described.get(name))
    return parser


def _limits(args: argparse.Namespace) -> int:
    # Not `from fastsock import limits`: that name is the limits() function.
    from fastsock.limits import format_report, limits, raise_nofile

    if args.raise_nofile:
        # Say what happened on stderr so that --json stays parseable on stdout.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("fastsock: %(message)s"))
        log = logging.getLogger("fastsock.cli.limits")
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
        try:
            raise_nofile(log=log)
        except OSError as exc:
            raise AppError(f"cannot raise the descriptor limit: {exc}") from None
    # The raise commands should name the server's PID, not this short-lived one.
    report = dataclasses.replace(limits(), pid=None)
    if args.json:
        json.dump(report.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_report(report) + "\n")
    return 0


def _pid(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"PID must be a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"PID must be positive, got {value}")
    return value


def _stat_port(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number 1..65535, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 1..65535, got {value}")
    return value


def _states(text: str) -> list[str]:
    from fastsock.limits.table import parse_state

    try:
        return [parse_state(word) for word in text.split(",") if word.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"SECONDS must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"SECONDS must be > 0, got {text}")
    return value


# Clear the terminal and go home, between --watch snapshots on a terminal.
_CLEAR_SCREEN = "\x1b[H\x1b[2J"


def _stat(args: argparse.Namespace) -> int:
    from fastsock.limits.bookkeeping import BookkeepingError, connections_url, fetch_bookkeeping
    from fastsock.limits.table import Filter, connection_table, format_stat

    asked = Filter(pid=args.pid, ports=frozenset(args.port), peer_ports=frozenset(args.peer_port),
                   states=frozenset(s for group in args.state for s in group))
    flt = asked
    if args.server is not None:
        try:
            connections_url(args.server)
        except ValueError as exc:
            raise AppError(str(exc), EXIT_USAGE) from None
    shown = 0
    try:
        while True:
            book = None
            if args.server is not None:
                try:   # first, so that the default filter can be the server's ports
                    book = fetch_bookkeeping(args.server)
                except BookkeepingError as exc:
                    raise AppError(str(exc)) from None
                if asked.pid is None and not asked.ports and not asked.peer_ports:
                    flt = dataclasses.replace(asked, ports=book.ports())
            try:
                report = connection_table(flt)
            except ProcessLookupError as exc:
                # A wrong PID is bad input; a watched process that exits ends the watch.
                raise AppError(str(exc), EXIT_RUNTIME if shown else EXIT_USAGE) from None
            except PermissionError as exc:
                raise AppError(f"{exc.strerror}: {exc.filename}") from None
            except FileNotFoundError as exc:
                raise AppError(f"stat reads /proc/net/tcp, which this system does not have "
                               f"(Linux only): {exc.filename}") from None
            if args.json:
                data = report.as_dict()
                if book is not None:
                    data = book.merge(data, report.rows)
                if args.watch is None:
                    json.dump(data, sys.stdout, indent=2)
                else:
                    json.dump({"time": time.time(), **data}, sys.stdout)
                sys.stdout.write("\n")
            else:
                if args.watch is not None:
                    sys.stdout.write(_CLEAR_SCREEN if sys.stdout.isatty() else
                                     ("\n" if shown else ""))
                    sys.stdout.write(f"-- {time.strftime('%Y-%m-%d %H:%M:%S')}, every "
                                     f"{args.watch:g} s (Ctrl-C stops) --\n")
                text = format_stat(report, columns=book)
                if book is not None:
                    text += "\n" + "\n".join(book.summary_lines(report.rows))
                sys.stdout.write(text + "\n")
            sys.stdout.flush()
            shown += 1
            if args.watch is None:
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:  # the way to stop --watch
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        chosen = _chosen_app(args_list)
        if chosen is not None and chosen not in APPS:
            at = args_list.index("serve")
            early = [w for w in args_list[at + 1:args_list.index(chosen, at + 1)]
                     if w.startswith("-") and w not in ("-h", "--help")]
            if early:
                raise AppError(f"options go after the app name: serve APP {early[0]} ... "
                               f"(available apps: {', '.join(APPS)})", EXIT_USAGE)
            raise AppError(f"unknown app {chosen!r} (available: {', '.join(APPS)})", EXIT_USAGE)
        try:
            parser = build_parser(args_list)
        except Exception as exc:  # the chosen app failed to import
            raise AppError(f"cannot load app {chosen!r}: {type(exc).__name__}: {exc}") from None
        args, extras = parser.parse_known_args(args_list)
        if extras:  # name the command whose --help lists the valid options
            where = " ".join(w for w in (args.command, getattr(args, "app", None)) if w)
            raise AppError(f"unrecognized arguments: {' '.join(extras)} "
                           f"(see: python -m fastsock {where} --help)", EXIT_USAGE)
        if args.command == "limits":
            return _limits(args)
        if args.command == "stat":
            if args.pid is not None and (args.port or args.peer_port):
                raise AppError("give --pid or --port/--peer-port, not both", EXIT_USAGE)
            return _stat(args)
        if getattr(args, "workers", None) is not None:
            from fastsock.apps._workers import run_app_workers
            return run_app_workers(args)
        return int(args._run(args))
    except AppError as exc:
        sys.stderr.write(f"fastsock: error: {exc}\n")
        return exc.exit_code
    except BrokenPipeError:  # e.g. `python -m fastsock limits | head -1`
        # Point stdout at /dev/null so the flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:  # a runtime failure an app did not name itself (e.g. EMFILE)
        sys.stderr.write(f"fastsock: error: {exc.strerror or exc}"
                         f"{f': {exc.filename}' if exc.filename else ''}\n")
        return EXIT_RUNTIME
    except KeyboardInterrupt:  # before a server installed its signal handlers
        sys.stderr.write("fastsock: interrupted\n")
        return 130


def _run_main() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    _run_main()


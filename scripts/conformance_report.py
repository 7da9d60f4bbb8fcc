"""Run the Autobahn-equivalent conformance cases against a WebSocket echo server.

    python scripts/conformance_report.py ws://127.0.0.1:9001/
    python scripts/conformance_report.py --server fastsock         # starts `python -m fastsock serve echo`
    python scripts/conformance_report.py --server websockets --cases 3 6.4 --no-slow
    python scripts/conformance_report.py --server fastsock --cases 12 13.7   # permessage-deflate

Prints one line per case (OK / NON-STRICT / FAILED, time, what was observed
when not OK) and a summary; exits 1 when any case is not OK. The server must
echo every message with its type on the URL's path and accept 16 MiB
messages. Cases are described in docs/conformance.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conformance.cases import CASES, FAILED, NON_STRICT, OK, run_case, select  # noqa: E402
from conformance.cases_deflate import select_deflate  # noqa: E402
from conformance.launch import ServerProcess, server_command  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("url", nargs="?", help="ws:// URL of a running echo server")
    target.add_argument("--server", choices=["fastsock", "websockets", "websockets-deflate",
                                             "picows", "aiohttp"],
                        help="start this echo server on a free port and test it")
    parser.add_argument("--loop", choices=["fastsock", "asyncio", "uvloop"],
                        help="with --server fastsock: the event loop to serve on")
    parser.add_argument("--host", default="127.0.0.1", help="with --server: address to listen on")
    parser.add_argument("--cases", nargs="*", metavar="ID",
                        help="case ids or prefixes (e.g. 6.4 7 9.1.6 12.1); default: all of "
                             "1-10 (12/13 with --deflate)")
    parser.add_argument("--deflate", action="store_true",
                        help="also run the permessage-deflate cases 12.* and 13.*")
    parser.add_argument("--no-slow", action="store_true", help="skip the slow cases (9.x limits, 12/13 above 4 KiB)")
    parser.add_argument("--patience", type=float, default=1.0,
                        help="multiply every deadline (not the fail-fast window) by this")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--markdown", metavar="FILE",
                        help="also write a Markdown table: case, what it checks, result")
    parser.add_argument("--quiet", action="store_true", help="print only cases that are not OK")
    args = parser.parse_args(argv)

    cases = select(args.cases, include_slow=not args.no_slow)
    if args.cases or args.deflate:
        cases += select_deflate(args.cases, include_slow=not args.no_slow)
    if not cases:
        parser.error(f"no case matches {args.cases}; ids run from {CASES[0].id} to {CASES[-1].id}")
    server = (ServerProcess(server_command(args.server, host=args.host, loop=args.loop))
              if args.server else None)
    url = server.url if server else args.url
    results = []
    t0 = time.monotonic()
    try:
        print(f"# {len(cases)} cases against {url}" + (f" ({args.server})" if server else ""))
        for case in cases:
            result = run_case(url, case, patience=args.patience)
            results.append(result)
            if not args.quiet or result.verdict != OK:
                print(result.line(), flush=True)
    except KeyboardInterrupt:
        print("# interrupted", file=sys.stderr)
    finally:
        if server:
            status = server.stop()
            if status not in (0, None):
                print(f"# server exited with status {status}", file=sys.stderr)
    counts = Counter(r.verdict for r in results)
    print(f"# {counts[OK]} OK, {counts[NON_STRICT]} NON-STRICT, {counts[FAILED]} FAILED "
          f"of {len(results)} in {time.monotonic() - t0:.1f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [dict(id=r.id, verdict=r.verdict, behavior=r.behavior, close=r.close_behavior,
                  detail=r.detail, duration=round(r.duration, 3)) for r in results], indent=1))
    if args.markdown:
        Path(args.markdown).write_text(markdown_table(cases, results))
    return 0 if counts[OK] == len(results) == len(cases) else 1


def markdown_table(cases: list, results: list) -> str:
    by_id = {r.id: r for r in results}
    lines = ["| case | what is sent and expected | result |", "|---|---|---|"]
    for case in cases:
        r = by_id.get(case.id)
        verdict = "not run" if r is None else r.verdict
        if r is not None and r.verdict != OK:
            verdict += f": {r.detail}"
        desc = case.description.replace("|", "\\|")
        lines.append(f"| {case.id} | {desc} | {verdict.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

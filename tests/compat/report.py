#!/usr/bin/env python3
"""Side-by-side table of the compat batteries' results.

Reads RESULTS_DIR/<client>.<target>.json (the summaries the batteries write
with --json; target is `direct` or `shardis`) and prints one row per case,
one column per client, each cell `direct/shardis`, then every failure
reason, merged where several clients fail the same case the same way.

    python3 tests/compat/report.py RESULTS_DIR [--markdown FILE]

Exit status: 0, or 1 when --strict is given and any cell failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TARGETS = ("direct", "shardis")


def load(results: Path, clients: list[str] | None):
    data: dict[tuple[str, str], dict | None] = {}
    found = []
    for p in sorted(results.glob("*.json")):
        client, _, target = p.stem.rpartition(".")
        if target not in TARGETS:
            continue
        try:
            data[(client, target)] = json.loads(p.read_text())
        except ValueError:
            data[(client, target)] = None
        if client not in found:
            found.append(client)
    order = clients or found
    return [c for c in order if c in found or any((c, t) in data for t in TARGETS)], data


def cell(summary: dict | None, case: str) -> str:
    if summary is None:
        return "-"
    for r in summary["cases"]:
        if r["name"] == case:
            return "pass" if r["ok"] else "FAIL"
    return "n/a"


def build(clients, data):
    # Case order: that of the battery with the most cases, then any others.
    lists = [[r["name"] for r in s["cases"]] for s in data.values() if s]
    cases: list[str] = []
    for names in sorted(lists, key=len, reverse=True):
        for n in names:
            if n not in cases:
                cases.append(n)
    rows = []
    for case in cases:
        row = [case]
        for c in clients:
            d, s = cell(data.get((c, "direct")), case), cell(data.get((c, "shardis")), case)
            row.append("n/a" if d == s == "n/a" else f"{d}/{s}")
        rows.append(row)
    totals = ["passed"]
    for c in clients:
        parts = []
        for t in TARGETS:
            s = data.get((c, t))
            parts.append(f"{s['passed']}/{s['passed'] + s['failed']}" if s else "-")
        totals.append(" ".join(parts))
    # A client that fails every case for one reason (typically its
    # handshake) is listed once: whole[target] = [(client, reason, count)].
    whole: dict[str, list[tuple[str, str, int]]] = {t: [] for t in TARGETS}
    for t in TARGETS:
        for c in clients:
            s = data.get((c, t))
            if s and s["cases"] and s["passed"] == 0:
                first = s["cases"][0]["reason"]
                if first and all(first in r["reason"] for r in s["cases"]):
                    whole[t].append((c, first, len(s["cases"])))
    # reasons[(target, case)] = {reason: [clients]}
    reasons: dict[tuple[str, str], dict[str, list[str]]] = {}
    for t in TARGETS:
        skip = {c for c, _, _ in whole[t]}
        for case in cases:
            for c in clients:
                s = data.get((c, t))
                if s is None or c in skip:
                    continue
                for r in s["cases"]:
                    if r["name"] == case and not r["ok"]:
                        reasons.setdefault((t, case), {}).setdefault(r["reason"], []).append(c)
    missing = [f"{c} ({t})" for c in clients for t in TARGETS if data.get((c, t)) is None]
    return cases, rows, totals, whole, reasons, missing


def versions(clients, data):
    out = []
    for c in clients:
        s = data.get((c, "direct")) or data.get((c, "shardis"))
        if s:
            out.append(f"{c} = {s['client']} {s['version']}, {s['variant']} ({s['protocol']})")
    return out


def text_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def md_table(header, rows):
    esc = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def render(clients, data, markdown: bool) -> str:
    cases, rows, totals, whole, reasons, missing = build(clients, data)
    header = ["case (direct/shardis)"] + clients
    out = []
    if markdown:
        out.append("Clients:\n")
        out += [f"- {v}" for v in versions(clients, data)]
        out.append("")
        out.append(md_table(header, rows + [totals]))
    else:
        out += versions(clients, data)
        out.append("")
        out.append(text_table(header, rows + [totals]))
    if missing:
        out.append("")
        out.append("No results (battery crashed or was not run): " + ", ".join(missing))
    for t in TARGETS:
        items = [(case, reasons[(t, case)]) for case in cases if (t, case) in reasons]
        out.append("")
        none = not items and not whole[t]
        out.append(f"{'### ' if markdown else ''}Failures against {t}:{' none' if none else ''}")
        if markdown and not none:
            out.append("")
        for c, reason, n in whole[t]:
            out.append(f"- **{c}: all {n} cases**: {reason}" if markdown else f"  {c}: ALL {n} cases: {reason}")
        for case, by_reason in items:
            for reason, who in by_reason.items():
                line = f"{case} [{', '.join(who)}]: {reason}"
                out.append(f"- `{case}` ({', '.join(who)}): {reason}" if markdown else f"  {line}")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--clients", help="comma-separated column order")
    ap.add_argument("--markdown", type=Path, help="also write the table as Markdown to this file")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any case failed on any target")
    args = ap.parse_args()
    clients, data = load(args.results, args.clients.split(",") if args.clients else None)
    if not clients:
        sys.exit(f"report: no results in {args.results}")
    print(render(clients, data, markdown=False), end="")
    if args.markdown:
        args.markdown.write_text(render(clients, data, markdown=True))
    if args.strict and any(s is None or s["failed"] for s in data.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()

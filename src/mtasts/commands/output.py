"""How the commands print: tables, DANE states, overrides (one line each)."""

from __future__ import annotations

from typing import Any, Dict


def print_table(rows) -> None:
    """Rows of strings as aligned columns (the first row the header); the last column unpadded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])


def describe_override(o: Dict[str, Any]) -> str:
    """An override's view (``servers.jsonviews.override_view``) on one line."""
    until = o["until"] or "no end"
    dane = ", also over DANE" if o["dane"] else ""
    return f"{o['domain']}: {o['level']} until {until}{dane} ({o['source']}: {o['reason']})"


def print_dane(dane: Dict[str, Any]) -> None:
    """DANE state and the TLSA records seen per MX host (query, cache show)."""
    print(f"{'dane:':16}{dane['state']}" + (f" ({dane['detail']})" if dane.get("detail") else ""))
    for host in dane["hosts"]:
        at = f" (TLSA at {host['tlsa_name']})" if host.get("tlsa_name") else ""
        print(f"  {host['host']}: {host['state']}{at}")
        for record in host["tlsa"]:
            print(f"    TLSA {record}")

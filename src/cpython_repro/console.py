"""The terminal presenter: the only module that imports rich."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

STYLE = {
    "identical": "bold green", "identical-after-adoption": "green", "same-content": "yellow",
    "content-differs": "bold red", "error": "bold red",
}
SHOWN_FINDINGS = 12


def console(quiet: bool = False) -> Console:
    return Console(stderr=False, quiet=quiet, highlight=False, soft_wrap=True)


def show_comparisons(out: Console, artifacts: list[dict[str, Any]]) -> None:
    table = Table(title=None, show_lines=False, expand=False)
    table.add_column("artifact")
    table.add_column("verdict")
    table.add_column("published sha256 / size")
    table.add_column("rebuilt sha256 / size")
    for a in artifacts:
        table.add_row(
            a["name"], f"[{STYLE[a['verdict']]}]{a['verdict']}[/]",
            f"{a['published']['sha256'][:16]}…  {a['published']['size']:,}",
            f"{a['rebuilt']['sha256'][:16]}…  {a['rebuilt']['size']:,}",
        )
    out.print(table)
    for a in artifacts:
        if a.get("error"):
            out.print(f"[bold red]{a['name']}[/]: {a['error']}")
        _show_adoption(out, a)
        findings = a["findings"]
        if not findings:
            continue
        out.print(f"[bold]{a['name']}[/] — {a['findings_total']} finding(s):")
        for f in findings[:SHOWN_FINDINGS]:
            mark = "[red]✗[/]" if f["kind"] == "content" else "[yellow]~[/]"
            out.print(f"  {mark} {f['kind']}: {escape(f['explanation'])}")
        if a["findings_total"] > SHOWN_FINDINGS:
            out.print(f"  … {a['findings_total'] - SHOWN_FINDINGS} more in the JSON report")
        d = a.get("diffoscope")
        if d:
            where = f": {d['text']}, {d['html']}" if d["text"] else ""
            out.print(f"  diffoscope on {len(d['members'])} member(s): {escape(d['status'])}"
                      f"{escape(where)}")


def _show_adoption(out: Console, a: dict[str, Any]) -> None:
    adoption = a.get("adoption")
    if not adoption:
        return
    if adoption["identical"]:
        out.print(f"[bold]{a['name']}[/]: the published bytes, once these were adopted from it:")
    else:
        out.print(f"[bold]{a['name']}[/]: adoption did not give the published bytes "
                  f"({escape(adoption['detail'])})")
    for f in adoption["fields"]:
        out.print(f"  [cyan]adopted[/] {f['field']}: {escape(f['value'])}")


def show_verify(out: Console, data: dict[str, Any], report_path: str) -> None:
    src = data["source"]
    out.print(f"[bold]CPython {data['version']}[/]  tag {src['tag']} → commit "
              f"{src['commit'][:12]} ({src['commit_time']})  recipe {data['recipe']['name']}")
    tools = data["toolchain"]
    out.print("toolchain: " + ", ".join(f"{k} {v}" for k, v in tools.items()
                                        if k not in ("image", "image_id")))
    for m in data["toolchain_mismatches"]:
        out.print(f"[yellow]toolchain:[/] {m}")
    show_comparisons(out, data["artifacts"])
    gen = data["generated_files"]
    gstyle = {"match": "green", "skipped": "yellow", "inconclusive": "yellow"}.get(
        gen["status"], "bold red")
    out.print(f"generated files: [{gstyle}]{gen['status']}[/]"
              + (f" ({escape(' '.join(gen['command']))} in {gen['image']})" if gen["image"]
                 else "") + (f": {escape(gen['detail'])}" if gen["detail"] else ""))
    for m in gen["tool_mismatches"]:
        out.print(f"  [yellow]~[/] {escape(m)}")
    for f in gen["files"]:
        if f["status"] != "same":
            out.print(f"  [red]✗[/] {escape(f['explanation'])}")
    sigs = data["signatures"]
    style = {"verified": "green", "failed": "bold red"}.get(sigs["status"], "yellow")
    out.print(f"signatures: [{style}]{sigs['status']}[/]")
    for c in sigs["checks"]:
        mark = {"verified": "[green]✓[/]", "failed": "[red]✗[/]"}.get(c["status"], "[yellow]~[/]")
        who = f" by {escape(c['signer'])}" if c["signer"] else ""
        when = f" at {c['signed_at']}" if c["signed_at"] else ""
        out.print(f"  {mark} {c['artifact']} {c['kind']}: {c['status']}{who}{when}: "
                  f"{escape(c['detail'])}")
    for n in data.get("not_checked", []):
        out.print(f"[yellow]not checked:[/] {escape(n['artifact'])}: {escape(n['reason'])}")
    for a in data["artifacts"]:
        if a.get("origin_note"):
            out.print(f"[yellow]note:[/] {escape(a['name'])}: {escape(a['origin_note'])}")
    style = STYLE[data["verdict"]]
    out.print(f"verdict: [{style}]{data['verdict']}[/]  exit {data['exit_code']}  "
              f"report: {escape(report_path)}")
    # A non-zero exit explains itself: one line per reason, last on the screen.
    for reason in data.get("reasons", []):
        out.print(f"[bold red]exit {data['exit_code']}:[/] {escape(reason)}")


def show_outputs(out: Console, written: dict[str, str]) -> None:
    for kind, path in written.items():
        out.print(f"{kind}: {escape(path)}")


@contextlib.contextmanager
def step(text: str) -> Iterator[None]:
    """A spinner with elapsed time while a long step runs, then one line saying how long it
    took. Used only on an interactive terminal; elsewhere the run is quiet and plain."""
    err = Console(stderr=True, highlight=False)
    started = time.monotonic()
    with err.status(f"{escape(text)}…"):
        yield
    err.print(f"[green]✓[/] {escape(text)} ({time.monotonic() - started:.1f} s)")

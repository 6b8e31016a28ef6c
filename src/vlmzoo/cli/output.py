"""What every command shares: the console, one-line errors, tables or JSON lines out, and
files written whole (a temporary file renamed into place)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def console(stderr: bool = False):
    """Rich's console with markup off: file names, captions and errors are printed as they are
    ("[/bold]" in a path is text, never a style); vlmzoo's own styling goes through ``styled``."""
    from rich.console import Console

    # never fold a file path or an error in two; piped into a file, rows are never wrapped
    return Console(stderr=stderr, soft_wrap=True, markup=False, width=None if _is_terminal(stderr) else WIDE)


def styled(label: str, style: str, rest: str = ""):
    """``label`` in ``style``, then ``rest`` as plain text."""
    from rich.text import Text

    return Text.assemble((label, style), rest)


WIDE = 100_000  # columns when the output is not a terminal: each table row stays on one line


def _is_terminal(stderr: bool) -> bool:
    stream = sys.stderr if stderr else sys.stdout
    return hasattr(stream, "isatty") and stream.isatty()


def fail(message: str, code: int = 2):
    console(stderr=True).print(styled("error:", "bold red", f" {message}"), highlight=False)
    sys.exit(code)


def emit(rows: list[dict], opts, table_columns: tuple[str, ...]):
    """Table to stdout, or JSON lines; with --out, written whole to a temp file then renamed."""
    if opts.get("out") or opts.get("jsonl"):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if opts.get("out"):
            write_atomic(Path(opts["out"]), text)
        else:
            click.echo(text, nl=False)
        return
    from rich.table import Table

    table = Table()
    for c in table_columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*[_cell(r.get(c)) for c in table_columns])
    console().print(table)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)


def write_atomic(path: Path, text: str):
    from vlmzoo.files import write_atomically

    write_atomically(path, text)


def finish(errors) -> None:
    """List images that were refused, and exit non-zero if there were any."""
    if not errors:
        return
    con = console(stderr=True)
    con.print(styled(f"{len(errors)} image(s) skipped:", "bold red"))
    for e in errors:
        con.print(f"  {e}", highlight=False)
    sys.exit(1)

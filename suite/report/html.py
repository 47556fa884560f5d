"""``report.html``: one self-contained page of a run (no network, no script): the accuracy, efficiency
and comparison tables, the plots (embedded PNGs), and each run's architecture as a heat map of
placements per layer (which ops at which sites, at which sizes)."""

from __future__ import annotations

import base64
import html
from collections import defaultdict
from pathlib import Path
from typing import Any

from spaces.architecture import Site
from suite.report.aggregate import method_name_label, task_label
from suite.report.choices import layer_label, layer_order
from suite.report.tables import Document

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
th { background: #f2f2f2; }
td.r { text-align: right; font-variant-numeric: tabular-nums; }
p.note { font-size: 13px; color: #444; max-width: 1100px; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
table.heat td { width: 22px; height: 18px; padding: 0; text-align: center; font-size: 11px; }
table.heat th { font-size: 11px; font-weight: normal; padding: 1px 4px; }
details { margin: 0.3em 0; } summary { cursor: pointer; }
"""


def _table(t) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = []
    for row in t.rows:
        cells = "".join(f'<td class="{"r" if a == "r" else "l"}">{html.escape(str(c)).replace("**", "")}</td>'
                        for c, a in zip(row, t.align))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _document(doc: Document, anchor: str, images: dict[str, Path]) -> str:
    parts = [f'<h2 id="{anchor}">{html.escape(doc.title)}</h2>']
    for t in doc.tables:
        if t.title:
            parts.append(f"<h3>{html.escape(t.title)}</h3>")
        parts.append(_table(t) if t.rows else "<p>(none)</p>")
        if t.note:
            parts.append(f'<p class="note">{html.escape(t.note)}</p>')
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in doc.notes if n.strip()]
    parts += [_figure(caption, png) for caption, png in images.items() if png.is_file()]
    return "\n".join(parts)


def _figure(caption: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<h3>{html.escape(caption)}</h3><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'


def heat_map(architecture: dict[str, Any]) -> str:
    """Placements per layer: a row per (op, position), a column per stack and layer; a cell shows the
    size (a dot for size-less ops), darker for larger."""
    cells: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    columns = set()
    for p in architecture.get("placements", []):
        site = Site.parse(p["site"])
        column = layer_label(site)
        columns.add(column)
        cells[(p["op"], site.position)][column] = p["size"]
    if architecture.get("full_finetune"):
        return "<p>every backbone parameter (full fine-tuning)</p>"
    if not cells:
        return "<p>no placements</p>"
    columns = sorted(columns, key=layer_order)
    largest = max((s for row in cells.values() for s in row.values() if s), default=1)
    head = "".join(f"<th>{column}</th>" for column in columns)
    body = []
    for (op, position), row in sorted(cells.items()):
        tds = []
        for column in columns:
            if column not in row:
                tds.append("<td></td>")
                continue
            size = row[column]
            shade = 0.35 + 0.65 * ((size or largest) / largest)
            tds.append(f'<td style="background: rgba(31, 119, 180, {shade:.2f}); color: white" '
                       f'title="{html.escape(op)} at {html.escape(position)}">{size if size else "•"}</td>')
        body.append(f"<tr><th>{html.escape(op)} {html.escape(position)}</th>{''.join(tds)}</tr>")
    return f'<table class="heat"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _architectures(records: list[dict[str, Any]]) -> str:
    parts = ['<h2 id="runs">Each run\'s architecture</h2>',
             '<p class="note">Each run\'s architecture: a row per op and position, a column per layer '
             "(enc / dec stack); the number is the size (rank, bottleneck width, prefix length), a dot a "
             "size-less op (BitFit, LNFit).</p>"]
    for r in records:
        if r["status"] != "ok" or not r.get("architecture"):
            continue
        peft = r["params"]["peft"]
        title = (f"{method_name_label(r['method'])}, {task_label(r['task'])}, seed {r['seed']}: "
                 f"{len(r['architecture']['placements'])} placements, {peft:,} parameters")
        parts.append(f"<details><summary>{html.escape(title)}</summary>{heat_map(r['architecture'])}</details>")
    return "\n".join(parts)


def write_html(path: Path, title: str, documents: dict[str, Document], images: dict[str, Path],
               records: list[dict[str, Any]], beside: dict[str, dict[str, Path]] | None = None) -> Path:
    """The page at ``path``: ``documents`` (anchor -> document), each followed by its ``beside`` images
    (anchor -> caption -> PNG), the plots section's ``images`` (caption -> PNG), architectures."""
    nav = " · ".join(f'<a href="#{a}">{html.escape(d.title)}</a>' for a, d in documents.items())
    sections = [_document(doc, anchor, (beside or {}).get(anchor, {})) for anchor, doc in documents.items()]
    figures = [_figure(caption, png) for caption, png in images.items() if png.is_file()]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{nav} · <a href="#plots">Plots</a> · <a href="#runs">Each run's architecture</a></p>
{''.join(sections)}
<h2 id="plots">Plots</h2>
{''.join(figures) or '<p>(no plots)</p>'}
{_architectures(records)}
</body></html>
"""
    path.write_text(page)
    return path

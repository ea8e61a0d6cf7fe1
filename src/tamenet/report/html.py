"""The report page: one self-contained HTML file (inline CSS, inline script, images as data URIs, no network).

Layout fits a laptop screen: the content column is at most 1200 px wide, images shrink to it, and wide
tables scroll inside their own box, never the page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

CSS = """
*{box-sizing:border-box} body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:12px 18px} h1{font-size:22px} h2{font-size:18px;margin-top:0}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px 16px;margin:14px 0;overflow:hidden}
nav{position:sticky;top:0;background:#fafafa;padding:6px 0;border-bottom:1px solid #ddd;z-index:2}
nav a{margin-right:12px;white-space:nowrap} img{max-width:100%;height:auto;display:block}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(520px,100%),1fr));gap:8px}
.grid figure{margin:0} figcaption{font-size:12px;color:#555}
.table-box{max-width:100%;overflow-x:auto} table{border-collapse:collapse;font-size:12px}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right} th{background:#f0f0f0;cursor:pointer}
td.l,th.l{text-align:left} .finding{border-left:4px solid #d62728;padding:4px 10px;margin:8px 0;background:#fff7f7}
.ok{border-left-color:#2ca02c;background:#f6fff6} code{font-size:12px;background:#f3f3f3;padding:1px 3px;
word-break:break-all} .note{color:#555;font-size:12px} select{font-size:14px}
"""

SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
    var body=t.tBodies[0], rows=Array.prototype.slice.call(body.rows), asc=th.dataset.asc!=='1';
    rows.sort(function(a,b){var x=a.cells[i].dataset.v||a.cells[i].textContent,
      y=b.cells[i].dataset.v||b.cells[i].textContent, fx=parseFloat(x), fy=parseFloat(y);
      var c=(isNaN(fx)||isNaN(fy))?x.localeCompare(y):fx-fy; return asc?c:-c;});
    rows.forEach(function(r){body.appendChild(r);}); th.dataset.asc=asc?'1':'0';});});});
var picker=document.getElementById('member-picker');
if(picker){picker.addEventListener('change',function(){var v=picker.value;
  document.querySelectorAll('#curves figure').forEach(function(f){
    f.style.display=(v==='all'||f.dataset.member===v)?'':'none';});});}
"""


@dataclass
class Section:
    """One section of the page: its anchor id, heading and body HTML."""

    id: str
    title: str
    body: str


def esc(value: Any) -> str:
    return html.escape(str(value))


def image(png: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{png}" alt="{esc(alt)}">'


def figure(png: str, caption: str, *, member: int | None = None) -> str:
    data = f' data-member="{member}"' if member is not None else ""
    return f"<figure{data}>{image(png, caption)}<figcaption>{esc(caption)}</figcaption></figure>"


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(header: list[str], rows: list[list[Any]], *, sortable: bool = False, left: int = 0) -> str:
    """An HTML table (numbers right-aligned; the first `left` columns left-aligned); sortable by a click."""
    head = "".join(f'<th class="{"l" if i < left else ""}">{esc(h)}</th>' for i, h in enumerate(header))
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            sort = f' data-v="{v}"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f'<td class="{"l" if i < left else ""}"{sort}>{esc(fmt(v))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    kind = ' class="sortable"' if sortable else ""
    return f'<div class="table-box"><table{kind}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def page(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole document."""
    nav = "".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in sections)
    parts = "".join(f'<section id="{s.id}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><link rel=\"icon\" href=\"data:,\"><style>{CSS}</style></head><body><main>"
            f"<h1>{esc(title)}</h1><p class=\"note\">{esc(subtitle)}</p><nav>{nav}</nav>{parts}</main>"
            f"<script>{SCRIPT}</script></body></html>")


__all__ = ["Section", "esc", "figure", "fmt", "image", "page", "table"]

"""GET /: the API documentation page with the live model catalog."""

from __future__ import annotations

from html import escape
from pathlib import Path
from string import Template

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from relay.catalog import Catalog, CatalogModel
from relay.money import decimal_str
from relay.tiers import TIERS

TEMPLATE = Template((Path(__file__).resolve().parents[1] / "templates" / "docs.html").read_text())


def _price(value) -> str:  # type: ignore[no-untyped-def]
    return "—" if value is None else f"${decimal_str(value)}"


def _model_row(model: CatalogModel) -> str:
    sell = model.sell
    image = (f"{_price(sell.image_input)} / {_price(sell.image_cached_input or sell.image_input)} / "
             f"{_price(sell.image_output)}" if sell.image_input is not None else "—")
    aliases = (f'<div class="aliases">also: {escape(", ".join(model.aliases))}</div>' if model.aliases else "")
    values = [escape(model.provider), escape(model.mode.replace("_", " ")), _price(sell.input),
              _price(sell.input if sell.cached_input is None else sell.cached_input), _price(sell.output) if model.mode != "embedding" else "—", image]
    cells = [f'<td data-label="Model"><code>{escape(model.name)}</code>{aliases}</td>']
    for i, (label, value) in enumerate(zip(LABELS[1:], values)):
        numeric = ' class="num"' if i >= 2 else ""
        cells.append(f'<td data-label="{label}"{numeric}>{value}</td>')
    return f'<tr data-model="{escape(model.name)}">' + "".join(cells) + "</tr>"


# The catalog's column labels (docs.js writes the same on the rows it builds from /v1/models).
LABELS = ["Model", "Provider", "Mode", "Input", "Cached input", "Output", "Image in / cached / out"]


def render(catalog: Catalog, base: str) -> str:
    tiers = "\n".join(f"<tr><td>{t.name.title()}</td><td>{t.rpm:,}</td><td>{t.tpm:,}</td></tr>" for t in TIERS.values())
    models = "\n".join(_model_row(m) for m in catalog.models.values())
    return TEMPLATE.substitute(base=escape(base), tiers=tiers, models=models, count=len(catalog.models))


async def docs(request: Request) -> Response:
    base = str(request.base_url).rstrip("/")
    return HTMLResponse(render(request.app.state.relay.catalog, base))

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
    cells = [
        f"<td><code>{escape(model.name)}</code></td>", f"<td>{escape(model.provider)}</td>",
        f"<td>{escape(model.mode.replace('_', ' '))}</td>", f'<td class="num">{_price(sell.input)}</td>',
        f'<td class="num">{_price(sell.cached_input)}</td>',
        f'<td class="num">{_price(sell.output) if model.mode != "embedding" else "—"}</td>',
        f'<td class="num">{image}</td>',
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def render(catalog: Catalog, base: str) -> str:
    tiers = "\n".join(f"<tr><td>{t.name.title()}</td><td>{t.rpm:,}</td><td>{t.tpm:,}</td></tr>" for t in TIERS.values())
    models = "\n".join(_model_row(m) for m in catalog.models.values())
    return TEMPLATE.substitute(base=escape(base), tiers=tiers, models=models)


async def docs(request: Request) -> Response:
    base = str(request.base_url).rstrip("/")
    return HTMLResponse(render(request.app.state.relay.catalog, base))

from decimal import Decimal
from pathlib import Path

import pytest

from relay.catalog import DEFAULT_CREATED, CatalogError, find_line, load_catalog, parse_catalog

SHIPPED = Path(__file__).resolve().parent.parent / "pricing" / "catalog.toml"
MODELS = {
    "gpt-5.5",
    "gpt-5",
    "gpt-5-mini",
    "gpt-4o",
    "gpt-4o-mini",
    "claude-sonnet-4-6",
    "claude-opus-4-5",
    "claude-haiku-4-5",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "gpt-image-2",
}

GOOD = """\
# test catalog
[models."gpt-4o"]
provider = "openai"
mode = "chat"
max_output_tokens = 16384

[models."gpt-4o".sell]
input = "3.00"
cached_input = "1.50"
output = "12.00"

[models."gpt-4o".list]
input = "2.50"
cached_input = "1.25"
output = "10.00"

[models."gpt-image-2"]
provider = "openai"
mode = "image_generation"
max_output_tokens = 8192
default_output_tokens = 6240
created = 1700000000

[models."gpt-image-2".sell]
input = "6"
output = "0"
image_input = "9.6"
image_output = "36"

[models."gpt-image-2".list]
input = "5"
output = "0"
image_input = "8"
image_output = "30"
"""


def refused(text: str) -> CatalogError:
    with pytest.raises(CatalogError) as info:
        parse_catalog(text, "pricing/catalog.toml")
    return info.value


def replace_line(text: str, number: int, new: str) -> str:
    lines = text.splitlines()
    lines[number - 1] = new
    return "\n".join(lines) + "\n"


def test_shipped_catalog_loads_all_models():
    catalog = load_catalog(SHIPPED)
    assert set(catalog.models) == MODELS
    assert catalog.providers() == {"openai", "anthropic"}
    gpt4o = catalog.get("gpt-4o")
    assert gpt4o.upstream == "gpt-4o" and gpt4o.mode == "chat"
    assert gpt4o.list.input == Decimal("2.50") and gpt4o.list.output == Decimal("10")
    assert gpt4o.sell.input >= gpt4o.list.input
    assert catalog.get("claude-sonnet-4-6").sell.cache_write is not None
    image = catalog.get("gpt-image-2")
    assert image.mode == "image_generation"
    assert (image.list.image_input, image.list.image_cached_input, image.list.image_output) == (
        Decimal(8),
        Decimal(2),
        Decimal(30),
    )
    assert (image.list.input, image.list.cached_input) == (Decimal(5), Decimal("1.25"))
    assert catalog.get("text-embedding-3-small").sell.output == 0
    assert catalog.get("nope") is None


def test_defaults():
    catalog = parse_catalog(GOOD)
    gpt4o = catalog.get("gpt-4o")
    assert gpt4o.upstream == "gpt-4o"
    assert gpt4o.default_output_tokens == 4096
    assert gpt4o.created == DEFAULT_CREATED
    assert gpt4o.sell.cache_write is None
    image = catalog.get("gpt-image-2")
    assert image.default_output_tokens == 6240 and image.created == 1700000000


def test_load_catalog_names_the_path(tmp_path):
    path = tmp_path / "catalog.toml"
    path.write_text(replace_line(GOOD, 10, "output = 12.0"))
    err = pytest.raises(CatalogError, load_catalog, path).value
    assert str(err).startswith(f"{path} line 10: ")


def test_syntax_error_names_line():
    err = refused(replace_line(GOOD, 8, 'input = "3.00'))
    assert str(err).startswith("pricing/catalog.toml line 8: TOML syntax error")
    assert err.line == 8


def test_float_price_names_line():
    err = refused(replace_line(GOOD, 10, "output = 12.0"))
    assert str(err) == (
        "pricing/catalog.toml line 10: model 'gpt-4o': sell.output must be a decimal string "
        'like "3.00", got 12.0'
    )


@pytest.mark.parametrize("bad", ['"-1.00"', '"1e-6"', '"abc"', '""', '" 3"'])
def test_bad_price_strings(bad):
    err = refused(replace_line(GOOD, 13, f"input = {bad}"))
    assert err.line == 13 and "list.input" in str(err)


def test_missing_provider_names_model_header():
    err = refused(replace_line(GOOD, 3, "# no provider"))
    assert err.line == 2
    assert "model 'gpt-4o': missing 'provider'" in str(err)


def test_unknown_provider_and_mode():
    assert refused(replace_line(GOOD, 3, 'provider = "acme"')).line == 3
    assert refused(replace_line(GOOD, 19, 'mode = "audio"')).line == 19


def test_unknown_key_names_line():
    err = refused(replace_line(GOOD, 5, "max_ouput_tokens = 16384"))
    assert err.line == 5 and "unknown key 'max_ouput_tokens'" in str(err)
    err = refused(replace_line(GOOD, 9, 'cached_inptu = "1.50"'))
    assert err.line == 9 and "sell.cached_inptu" in str(err)


def test_image_model_without_image_prices():
    text = replace_line(GOOD, 28, "# image_output removed")
    err = refused(text)
    assert err.line == 24  # the [models."gpt-image-2".sell] header
    assert "sell.image_output is required" in str(err) and "image" in str(err)


def test_missing_sell_table():
    lines = GOOD.splitlines()
    text = "\n".join(lines[:6] + lines[11:]) + "\n"  # drop [models."gpt-4o".sell] and its prices
    err = refused(text)
    assert err.line == 2 and "sell" in str(err)


def test_default_output_over_max():
    err = refused(replace_line(GOOD, 21, "default_output_tokens = 9000"))
    assert err.line == 21 and "exceeds max_output_tokens" in str(err)


def test_find_line_handles_quoting_and_dotted_keys():
    text = "[models.'a.b']\nsell.input = \"1\"\n[models.\"c\" . list]\ninput = \"2\"\n"
    assert find_line(text, ("models", "a.b", "sell", "input")) == 2
    assert find_line(text, ("models", "a.b", "provider")) == 1
    assert find_line(text, ("models", "c", "list", "input")) == 4
    assert find_line(text, ("models", "c", "list", "output")) == 3

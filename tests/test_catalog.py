from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from relay.catalog import DEFAULT_CREATED, Catalog, CatalogError, find_line, is_snapshot_of, load_catalog, parse_catalog

SHIPPED = Path(__file__).resolve().parent.parent / "pricing" / "catalog.toml"
# The models the catalog carried before the current generations were added: none may go.
EARLIER = {
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
CURRENT = {
    "gpt-6.1-sol", "gpt-6.1-terra", "gpt-6-astra", "gpt-6-sol", "gpt-6-luna",
    "gpt-5.6", "gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-5.4", "gpt-5.4-mini",
    "claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-fable-5-1", "claude-fable-5",
    "claude-opus-5", "claude-sonnet-5", "claude-opus-4-8", "claude-opus-4-7", "claude-opus-4-6",
    "gpt-image-2.6-flare", "gpt-image-2.6-sunburst", "gpt-image-2.5-flare", "gpt-image-2.5-sunburst",
}
MODELS = EARLIER | CURRENT

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


def test_shipped_catalog_resolves_what_claude_code_asks_for():
    catalog = load_catalog(SHIPPED)
    for asked, public in [
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-opus-4-8", "claude-opus-4-8"),
        ("claude-sonnet-5", "claude-sonnet-5"),
        ("claude-opus-4-5-20251101", "claude-opus-4-5"),
        ("claude-sonnet-latest", "claude-sonnet-5-5"),
        ("gpt-5.5-2026-04-23", "gpt-5.5"),
        ("gpt-mini-latest", "gpt-5.4-mini"),
        ("gpt-image-2-2026-04-21", "gpt-image-2"),
    ]:
        model = catalog.get(asked)
        assert model is not None and model.name == public, asked
        entry = catalog.models[public]
        assert (model.sell, model.list, model.provider, model.mode) == (entry.sell, entry.list, entry.provider, entry.mode)
        assert asked == public or asked in entry.aliases
    assert catalog.get("claude-sonnet-4-5-20250929") is None  # claude-sonnet-4-5 retired 2026-11-30: no entry
    assert catalog.get("gpt-4o-2024-05-13") is None  # a snapshot priced apart is another model
    assert "gpt-4o-2024-11-20" in catalog.models["gpt-4o"].aliases


def test_snapshot_alias_is_sent_upstream_as_asked_other_aliases_as_the_entry():
    catalog = load_catalog(SHIPPED)
    assert catalog.get("claude-haiku-4-5-20251001").upstream == "claude-haiku-4-5-20251001"  # the caller's pin
    assert catalog.get("gpt-4o-2024-11-20").upstream == "gpt-4o-2024-11-20"
    # a -latest pointer may move before the catalog does: send the id whose price is the entry's
    assert catalog.get("claude-sonnet-latest").upstream == "claude-sonnet-5-5"
    assert catalog.get("claude-haiku-4-5").upstream == "claude-haiku-4-5"


def test_aliases_are_unique_across_the_shipped_catalog():
    catalog = load_catalog(SHIPPED)
    aliases = [a for m in catalog.models.values() for a in m.aliases]
    assert len(aliases) == len(set(aliases)) and not set(aliases) & set(catalog.models)
    assert set(catalog.aliases) == set(aliases)


@pytest.mark.parametrize(
    ("alias", "upstream", "expected"),
    [
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5", True),
        ("gpt-5.5-2026-04-23", "gpt-5.5", True),
        ("claude-sonnet-latest", "claude-sonnet-5-5", False),
        ("gpt-4o-mini", "gpt-4o", False),
        ("gpt-4o-2024-11", "gpt-4o", False),
        ("gpt-4o2024-11-20", "gpt-4o", False),
    ],
)
def test_is_snapshot_of(alias, upstream, expected):
    assert is_snapshot_of(alias, upstream) is expected


def with_aliases(gpt4o: str, image: str | None = None) -> str:
    text = GOOD.replace('max_output_tokens = 16384\n', f"max_output_tokens = 16384\naliases = {gpt4o}\n")
    if image is not None:
        text = text.replace("created = 1700000000\n", f"created = 1700000000\naliases = {image}\n")
    return text


def test_alias_resolves_to_the_entry():
    catalog = parse_catalog(with_aliases('["gpt-4o-2024-08-06", "my-4o"]'))
    gpt4o = catalog.get("gpt-4o")
    assert gpt4o.aliases == ("gpt-4o-2024-08-06", "my-4o")
    pinned, named = catalog.get("gpt-4o-2024-08-06"), catalog.get("my-4o")
    assert pinned.name == named.name == "gpt-4o"
    assert pinned.sell == named.sell == gpt4o.sell and pinned.list == gpt4o.list
    assert pinned.upstream == "gpt-4o-2024-08-06" and named is gpt4o  # a name of ours goes upstream as gpt-4o
    assert set(catalog.models) == {"gpt-4o", "gpt-image-2"}  # aliases are not listed as models
    assert catalog == parse_catalog(with_aliases('["gpt-4o-2024-08-06", "my-4o"]'))


def test_alias_that_is_a_model_name_is_refused():
    err = refused(with_aliases('["gpt-image-2"]'))
    assert err.line == 6  # the aliases line of gpt-4o
    assert "model 'gpt-4o': alias 'gpt-image-2' is also a model name" in str(err)


def test_alias_claimed_by_two_models_is_refused():
    err = refused(with_aliases('["shared"]', '["shared"]'))
    assert "model 'gpt-image-2': alias 'shared' is already an alias of model 'gpt-4o'" in str(err)
    assert err.line == with_aliases('["shared"]', '["shared"]').splitlines().index('aliases = ["shared"]', 10) + 1


@pytest.mark.parametrize("bad", ['"gpt-4o-2024-08-06"', "[1]", '[""]', '["x", "x"]', '["gpt-4o"]'])
def test_bad_aliases_name_the_line(bad):
    err = refused(with_aliases(bad))
    assert err.line == 6 and "alias" in str(err)


def test_catalog_built_in_code_refuses_a_clash_too():
    catalog = parse_catalog(with_aliases('["shared"]'))
    clashing = dict(catalog.models, **{"gpt-image-2": replace(catalog.models["gpt-image-2"], aliases=("shared",))})
    with pytest.raises(ValueError, match="already an alias of model 'gpt-4o'"):
        Catalog(clashing)


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

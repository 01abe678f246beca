import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from relay.catalog import load_catalog
from scripts import update_pricing as up

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "pricing" / "catalog.toml"
MARKUP = ROOT / "pricing" / "markup.toml"


@pytest.fixture(scope="module")
def cost_map():
    return up.litellm_cost_map()  # imports litellm once for the module (~8 s)


@pytest.fixture
def files(tmp_path):
    catalog, markup = tmp_path / "catalog.toml", tmp_path / "markup.toml"
    shutil.copy(CATALOG, catalog)
    shutil.copy(MARKUP, markup)
    return catalog, markup


def edit_section(path: Path, header: str, old: str, new: str) -> None:
    """Replace the first `old` after `header` (so same-valued keys of other models stay)."""
    text = path.read_text()
    start = text.index(header)
    at = text.index(old, start)
    path.write_text(text[:at] + new + text[at + len(old) :])


def test_per_1m_is_exact():
    assert up.per_1m(2.5e-06) == Decimal("2.5")
    assert up.per_1m(1.25e-07) == Decimal("0.125")
    assert up.per_1m(3e-05) == Decimal("30")
    assert up.per_1m(0.0) == 0
    with pytest.raises(ValueError):
        up.per_1m("2.5e-06")


def test_sell_prices_round_up():
    listed = up.Prices(input=Decimal("0.123456"), output=Decimal("10"))
    sell = up.sell_prices(listed, Decimal("1.2"), 4, {"output": Decimal("11.5")})
    assert sell.input == Decimal("0.1482")  # 0.1481472 rounded UP
    assert sell.output == Decimal("11.5")  # explicit: as written


def test_check_passes_on_shipped_catalog(cost_map, capsys):
    assert up.run_check(CATALOG, cost_map) == 0
    assert f"catalog OK: {len(load_catalog(CATALOG))} models" in capsys.readouterr().out


def test_check_fails_on_unknown_model(files, cost_map, capsys):
    catalog, _ = files
    edit_section(catalog, '[models."gpt-4o"]', 'upstream = "gpt-4o"', 'upstream = "gpt-4o-nonexistent"')
    assert up.run_check(catalog, cost_map) == 1
    assert "gpt-4o: LiteLLM does not know model 'gpt-4o-nonexistent'" in capsys.readouterr().err


def test_check_fails_on_sell_below_list(files, cost_map, capsys):
    catalog, _ = files
    edit_section(catalog, '[models."gpt-4o".sell]', 'output = "12.00"', 'output = "9.99"')
    assert up.run_check(catalog, cost_map) == 1
    assert "gpt-4o: sell.output 9.99 is below list price 10.00" in capsys.readouterr().err


def test_check_fails_on_image_model_without_image_prices(files, cost_map, capsys):
    catalog, _ = files
    edit_section(catalog, '[models."gpt-image-2".sell]', 'image_output = "36.00"\n', "")
    assert up.run_check(catalog, cost_map) == 1
    err = capsys.readouterr().err
    assert "line " in err and "gpt-image-2" in err and "image_output is required" in err


def test_check_fails_on_mode_and_provider_mismatch(files, cost_map, capsys):
    catalog, _ = files
    edit_section(catalog, '[models."gpt-4o"]', 'mode = "chat"', 'mode = "embedding"')
    edit_section(catalog, '[models."gpt-5"]', 'provider = "openai"', 'provider = "anthropic"')
    assert up.run_check(catalog, cost_map) == 1
    err = capsys.readouterr().err
    assert "gpt-4o: mode 'embedding' but LiteLLM says 'chat'" in err
    assert "gpt-5: provider 'anthropic' but LiteLLM says 'openai'" in err


def test_default_run_writes_nothing(files, cost_map, capsys):
    catalog, markup = files
    edit_section(markup, "[markup]", 'default = "1.20"', 'default = "1.30"')
    before = catalog.read_text()
    assert up.run_update(catalog, markup, cost_map=cost_map) == 0
    assert catalog.read_text() == before
    out = capsys.readouterr().out
    assert "gpt-4o" in out and "sell.input" in out and "3.00" in out and "3.25" in out and "+8.3%" in out
    assert "not written" in out


def test_write_is_idempotent_and_matches_shipped(tmp_path, cost_map, capsys):
    fresh = tmp_path / "catalog.toml"
    assert up.run_update(fresh, MARKUP, write=True, cost_map=cost_map) == 0
    assert fresh.read_text() == CATALOG.read_text()
    assert load_catalog(fresh) == load_catalog(CATALOG)
    capsys.readouterr()
    assert up.run_update(fresh, MARKUP, write=True, cost_map=cost_map) == 0
    assert "no changes" in capsys.readouterr().out


def test_write_applies_markup_change(files, cost_map, capsys):
    catalog, markup = files
    edit_section(markup, '[models."gpt-4o"]', "\n", '\nmultiplier = "1.333"\n')
    assert up.run_update(catalog, markup, write=True, cost_map=cost_map) == 0
    model = load_catalog(catalog).get("gpt-4o")
    assert model.sell.input == Decimal("3.3325")  # 2.50 x 1.333
    assert model.sell.cached_input == Decimal("1.6663")  # 1.25 x 1.333 = 1.66625, rounded up
    out = capsys.readouterr().out
    assert "sell.cached_input" in out and "wrote" in out
    assert up.run_check(catalog, cost_map) == 0


def test_write_refuses_markup_below_list(files, cost_map, capsys):
    catalog, markup = files
    edit_section(markup, "[markup.providers]", 'anthropic = "1.15"', 'anthropic = "0.90"')
    before = catalog.read_text()
    assert up.run_update(catalog, markup, write=True, cost_map=cost_map) == 1
    assert catalog.read_text() == before
    assert "claude-haiku-4-5: sell.input 0.90 is below list price 1.00" in capsys.readouterr().out


def test_markup_errors_name_the_line(files, cost_map, capsys):
    _, markup = files
    edit_section(markup, '[models."gpt-4o"]', "\n", "\nmultipler = 1.3\n")
    line = markup.read_text().splitlines().index("multipler = 1.3") + 1
    assert up.run_update(CATALOG, markup, cost_map=cost_map) == 1
    assert f"{markup} line {line}: model 'gpt-4o': unknown key multipler" in capsys.readouterr().err


def test_unknown_model_in_markup(files, cost_map, capsys):
    _, markup = files
    markup.write_text(markup.read_text() + '\n[models."gpt-nonexistent-9"]\n')
    assert up.run_update(CATALOG, markup, cost_map=cost_map) == 1
    assert "LiteLLM does not know model 'gpt-nonexistent-9'" in capsys.readouterr().err


def test_cli_check_subprocess():
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    result = subprocess.run(
        [sys.executable, "scripts/update_pricing.py", "--check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"catalog OK: {len(load_catalog(CATALOG))} models" in result.stdout


# --- aliases ---------------------------------------------------------------------------------------


def test_litellm_aliases_are_same_priced_snapshots_and_alias_rows(cost_map):
    assert up.litellm_aliases("claude-haiku-4-5", cost_map) == ["claude-haiku-4-5-20251001"]
    # gpt-4o-2024-05-13 is priced apart: another model, not an alias
    assert up.litellm_aliases("gpt-4o", cost_map) == ["gpt-4o-2024-08-06", "gpt-4o-2024-11-20"]
    assert up.litellm_aliases("claude-sonnet-5-5", cost_map) == ["claude-sonnet-latest"]  # LiteLLM's alias_of row
    assert up.litellm_aliases("claude-opus-4-8", cost_map) == []


def test_plain_cost_map_aliases():
    info = {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
    cost_map = {
        "m": info,
        "m-latest": info,  # an alias row: the same entry
        "m-2026-01-02": dict(info),
        "m-20260103": dict(info, output_cost_per_token=3e-06),  # priced apart
        "m-2026-01-04": dict(info, litellm_provider="azure"),
        "m-mini": dict(info),  # another model that happens to cost the same
        "azure/m": info,
    }
    assert up.litellm_aliases("m", cost_map) == ["m-2026-01-02", "m-latest"]


def add_to_model(markup: Path, model: str, line: str) -> None:
    edit_section(markup, f'[models."{model}"]\n', f'[models."{model}"]\n', f'[models."{model}"]\n{line}\n')


def test_markup_alias_is_written_resolved_and_checked(files, cost_map, capsys):
    catalog, markup = files
    add_to_model(markup, "claude-haiku-4-5", 'aliases = ["claude-3-5-haiku-latest"]')
    assert up.run_update(catalog, markup, write=True, cost_map=cost_map) == 0
    loaded = load_catalog(catalog)
    # finance's names first, then LiteLLM's own
    assert loaded.models["claude-haiku-4-5"].aliases == ("claude-3-5-haiku-latest", "claude-haiku-4-5-20251001")
    resolved = loaded.get("claude-3-5-haiku-latest")
    assert resolved.name == "claude-haiku-4-5" and resolved.upstream == "claude-haiku-4-5"
    assert "claude-3-5-haiku-latest" in capsys.readouterr().out  # the diff shows it
    assert up.run_check(catalog, cost_map) == 0


def test_markup_alias_clash_names_the_line(files, cost_map, capsys):
    _, markup = files
    add_to_model(markup, "gpt-4o", 'aliases = ["gpt-4o-mini"]')
    line = markup.read_text().splitlines().index('aliases = ["gpt-4o-mini"]') + 1
    assert up.run_update(CATALOG, markup, cost_map=cost_map) == 1
    assert f"{markup} line {line}: model 'gpt-4o': alias 'gpt-4o-mini' is also a model name" in capsys.readouterr().err


def test_markup_alias_claimed_twice_is_refused(files, cost_map, capsys):
    _, markup = files
    add_to_model(markup, "gpt-4o", 'aliases = ["house-model"]')
    add_to_model(markup, "gpt-5", 'aliases = ["house-model"]')
    assert up.run_update(CATALOG, markup, cost_map=cost_map) == 1
    assert "alias 'house-model' is already an alias of model 'gpt-5'" in capsys.readouterr().err


def test_write_refuses_an_alias_priced_apart(files, cost_map, capsys):
    catalog, markup = files
    add_to_model(markup, "gpt-4o", 'aliases = ["gpt-4o-2024-05-13"]')
    before = catalog.read_text()
    assert up.run_update(catalog, markup, write=True, cost_map=cost_map) == 1
    assert catalog.read_text() == before
    assert "gpt-4o: alias 'gpt-4o-2024-05-13' is another model in LiteLLM" in capsys.readouterr().out


def test_a_snapshot_listed_as_a_model_is_not_also_an_alias(files, cost_map):
    catalog, markup = files
    markup.write_text(markup.read_text() + '\n[models."gpt-4o-2024-11-20"]\n')
    assert up.run_update(catalog, markup, write=True, cost_map=cost_map) == 0
    loaded = load_catalog(catalog)
    assert loaded.models["gpt-4o"].aliases == ("gpt-4o-2024-08-06",)
    assert loaded.get("gpt-4o-2024-11-20").name == "gpt-4o-2024-11-20"


def test_check_fails_on_alias_priced_apart_or_unknown_snapshot(files, cost_map, capsys):
    catalog, _ = files
    edit_section(catalog, '[models."gpt-4o"]', '"gpt-4o-2024-11-20"]', '"gpt-4o-2024-11-20", "gpt-4o-2024-05-13"]')
    edit_section(catalog, '[models."gpt-5"]', '"gpt-5-2025-08-07"]', '"gpt-5-2025-08-07", "gpt-5-2099-01-01"]')
    assert up.run_check(catalog, cost_map) == 1
    err = capsys.readouterr().err
    assert "gpt-4o: alias 'gpt-4o-2024-05-13' is another model in LiteLLM" in err
    assert "gpt-5: alias 'gpt-5-2099-01-01' is sent upstream as is, but LiteLLM does not know it" in err


def test_check_refuses_an_alias_clash_with_its_line(files, cost_map, capsys):
    catalog, _ = files
    edit_section(catalog, '[models."gpt-5"]', '"gpt-5-2025-08-07"]', '"gpt-5-2025-08-07", "gpt-4o-2024-08-06"]')
    line = catalog.read_text().splitlines().index('aliases = ["gpt-4o-2024-08-06", "gpt-4o-2024-11-20"]') + 1
    assert up.run_check(catalog, cost_map) == 1
    err = capsys.readouterr().err  # gpt-5 comes first in the catalog: gpt-4o's claim is the clash
    assert f"line {line}: model 'gpt-4o': alias 'gpt-4o-2024-08-06' is already an alias of model 'gpt-5'" in err


# --- provider prices the catalog must carry: long-context tiers, cache-write TTLs -----------------


def drop_tier(path: Path, model: str, table: str) -> None:
    """Remove the [[models."model".table.tiers]] block(s), as an older catalog would lack them."""
    text = path.read_text()
    header = f'[[models."{model}".{table}.tiers]]\n'
    start = text.index(header)
    end = text.index("\n\n", start) + 1
    path.write_text(text[:start] + text[end:])


def test_tier_keys_finds_thresholds_and_leaves_service_tiers_out():
    info = {"input_cost_per_token": 1e-06, "input_cost_per_token_above_272k_tokens": 2e-06,
            "input_cost_per_token_above_272k_tokens_priority": 9e-06,
            "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 3e-06,
            "output_cost_per_token_above_128000_tokens": 4e-06, "cache_creation_input_token_cost_above_1hr": 5e-06}
    assert up.tier_keys(info) == {
        128000: {"output": "output_cost_per_token_above_128000_tokens"},
        200000: {"cache_write_1h": "cache_creation_input_token_cost_above_1hr_above_200k_tokens"},
        272000: {"input": "input_cost_per_token_above_272k_tokens"},
    }


def test_list_prices_carry_tiers_and_ttl_writes(cost_map):
    sol = up.list_prices(cost_map["gpt-6.1-sol"])
    assert (sol.cache_write, sol.cache_write_12h) == (Decimal("2.5"), Decimal("5"))
    (tier,) = sol.tiers
    assert tier.above_tokens == 272000 and tier.fields["input"] == Decimal("4") and tier.fields["output"] == Decimal("15")
    haiku = up.list_prices(cost_map["claude-haiku-4-5"])
    assert (haiku.cache_write, haiku.cache_write_1h, haiku.tiers) == (Decimal("1.25"), Decimal("2"), ())


def test_check_fails_on_a_planted_catalog_lacking_a_tier(files, cost_map, capsys):
    catalog, _ = files
    drop_tier(catalog, "gpt-5.5", "sell")
    drop_tier(catalog, "gpt-5.5", "list")
    load_catalog(catalog)  # a valid catalog, as one written before tiers were carried
    assert up.run_check(catalog, cost_map) == 1
    err = capsys.readouterr().err
    assert "gpt-5.5: the provider has long-context prices above 272000 input tokens" in err
    assert "catalog's sell has no such tier" in err and "catalog's list has no such tier" in err


def test_check_fails_on_sell_and_list_tiers_that_differ(files, cost_map, capsys):
    catalog, _ = files
    drop_tier(catalog, "gpt-5.5", "sell")
    assert up.run_check(catalog, cost_map) == 1
    assert "sell tiers [] and list tiers [272000] must have the same above_tokens" in capsys.readouterr().err


def test_check_fails_on_a_tier_lacking_a_price_the_provider_has(files, cost_map, capsys):
    catalog, _ = files
    edit_section(catalog, '[[models."claude-haiku-5-5".sell.tiers]]', 'cache_write_1h = "1.15"\n', "")
    edit_section(catalog, '[[models."claude-haiku-5-5".list.tiers]]', 'cache_write_1h = "1.00"\n', "")
    assert up.run_check(catalog, cost_map) == 1
    err = capsys.readouterr().err
    assert "claude-haiku-5-5: sell tier above 100000 tokens lacks cache_write_1h" in err
    # without it, 1-hour writes above 100k would sell at the base 1-hour price, below the provider's
    assert "above 100000 tokens: sell.cache_write_1h 0.23 is below LiteLLM's list price 1.00" in err


def test_check_fails_on_a_tier_sold_below_list(files, cost_map, capsys):
    catalog, _ = files
    edit_section(catalog, '[[models."gpt-5.5".sell.tiers]]', 'output = "54.00"', 'output = "44.00"')
    assert up.run_check(catalog, cost_map) == 1
    assert "gpt-5.5: above 272000 tokens: sell.output 44.00 is below list price 45.00" in capsys.readouterr().err


def test_check_fails_on_a_missing_one_hour_write_price(files, cost_map, capsys):
    catalog, _ = files
    edit_section(catalog, '[models."claude-haiku-4-5".sell]', 'cache_write_1h = "2.30"\n', "")
    assert up.run_check(catalog, cost_map) == 1
    err = capsys.readouterr().err
    assert "claude-haiku-4-5: the provider prices cache_write_1h (2.00/1M list) and the catalog's sell has no" in err
    assert "claude-haiku-4-5: sell.cache_write_1h 1.4375 is below list price 2.00" in err


def test_cli_check_fails_on_a_planted_catalog(files):
    catalog, _ = files
    drop_tier(catalog, "gpt-6.1-sol", "sell")
    drop_tier(catalog, "gpt-6.1-sol", "list")
    result = subprocess.run([sys.executable, "scripts/update_pricing.py", "--check", "--catalog", str(catalog)],
                            cwd=ROOT, env=dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "gpt-6.1-sol: the provider has long-context prices above 272000 input tokens" in result.stderr


def test_write_carries_tiers_marked_up(files, cost_map):
    catalog, markup = files
    drop_tier(catalog, "gpt-5.5", "sell")
    drop_tier(catalog, "gpt-5.5", "list")
    assert up.run_update(catalog, markup, write=True, cost_map=cost_map) == 0
    model = load_catalog(catalog).get("gpt-5.5")
    (sell,), (listed,) = model.sell.tiers, model.list.tiers
    assert listed.fields == {"input": Decimal("10"), "cached_input": Decimal("1"), "output": Decimal("45")}
    assert sell.fields == {"input": Decimal("12"), "cached_input": Decimal("1.2"), "output": Decimal("54")}  # x 1.20
    assert catalog.read_text() == CATALOG.read_text()

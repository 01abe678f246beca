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
    assert "catalog OK: 11 models" in result.stdout

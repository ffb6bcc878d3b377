import pytest

from goldrl_dagster.lib.bingx.errors import BingXError, UnknownSymbolError
from goldrl_dagster.lib.bingx.symbols import GOLD_SYMBOLS, resolve_symbol


@pytest.mark.parametrize(
    "alias",
    [
        "Gold-USDT",
        "GOLD-USDT",
        "gold_usdt",
        "XAUTUSDT",
        "xaut-usdt",
        "XAUT_USDT",
        "XAUT/USDT",
        " XAUT-USDT ",
        "XAUT-USDT",
    ],
)
def test_gold_aliases_resolve_to_xaut(alias):
    assert resolve_symbol(alias) == "XAUT-USDT"


@pytest.mark.parametrize("alias", ["PAXGUSDT", "paxg-usdt", "PAXG_USDT", "PAXG-USDT"])
def test_paxg_aliases(alias):
    assert resolve_symbol(alias) == "PAXG-USDT"


@pytest.mark.parametrize("name", ["BTC-USDT", "GOLD-USD", "XAUT", "", "XAUTUSDC", "SILVER-USDT"])
def test_unknown_symbols_fail_loudly(name):
    with pytest.raises(UnknownSymbolError) as info:
        resolve_symbol(name)
    error = info.value
    assert isinstance(error, ValueError) and isinstance(error, BingXError)
    assert error.code == 109425
    for symbol in GOLD_SYMBOLS:
        assert symbol in str(error)
    assert repr(name) in str(error)

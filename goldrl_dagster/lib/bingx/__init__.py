"""BingX USDT-margined perpetual ("swap") market-data client and its local simulator.

The client speaks BingX's real wire protocol; the simulator in :mod:`.simulator` speaks the same
protocol, so tests and demos exercise the very client that talks to the exchange.
"""

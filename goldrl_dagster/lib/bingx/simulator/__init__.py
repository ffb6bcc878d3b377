"""A local BingX: simulated gold market data served over BingX's real REST and WS protocol.

Everything it serves is marked as simulated (``X-GoldRL-Simulated: true`` on every REST
response, ``(SIMULATED)`` in contract display names), so it can never pass for exchange data.
"""

"""``chat bench``: a capacity report measured through the real HTTP endpoints.

Each named scenario (see :mod:`chat.bench.scenarios`) runs the same load client against the
product, with every message stored in PostgreSQL, and against the floor (see
:mod:`chat.bench.floor`): a minimal fan-out server with no database, so every figure comes
with its ratio to what the same client and machine can do at best.
"""

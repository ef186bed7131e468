"""``chat bench``: a capacity report measured through the real HTTP endpoints.

Each named scenario (see :mod:`chat.bench.scenarios`) runs the same load client against the
product, with every message stored in PostgreSQL, and against the floor (see
:mod:`chat.bench.floor`): a minimal fan-out server with no database, so every figure comes
with its ratio to what the same client and machine can do at best.
"""

# The named scenarios, in the order ``--scenario all`` runs them (see chat.bench.report);
# here, so that the command line knows them without importing what the bench needs.
SCENARIOS = ("team", "steady", "ramp", "idle", "storm", "scale-out", "typing",
             "team-typing")

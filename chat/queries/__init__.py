"""All SQL, by table, as named functions with bound parameters."""

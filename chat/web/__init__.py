"""HTTP routes, split by audience."""

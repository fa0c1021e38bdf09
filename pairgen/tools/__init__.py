"""Commands over finished datasets: verify, inspect / diff, preview."""

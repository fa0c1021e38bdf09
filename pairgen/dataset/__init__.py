"""A dataset directory: its card, tables, fingerprint, versions and the crash-safe output folder."""

"""Where the work runs: the local process pool, Ray, progress bars."""

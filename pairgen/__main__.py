"""``python -m pairgen``: the same as the ``pairgen`` command."""

from pairgen.cli import main

if __name__ == "__main__":
    main(prog_name="pairgen")

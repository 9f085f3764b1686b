"""``python -m synapse_steps.cli``."""

from synapse_steps.cli.app import main

if __name__ == "__main__":
    raise SystemExit(main())

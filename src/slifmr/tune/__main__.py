"""`python -m slifmr.tune model=<m> dataset=<d> tune.trials=<n> [overrides]`."""

from slifmr.tune.cli import main

if __name__ == "__main__":
    main()

"""``python -m slifmr.prepare`` -> :func:`slifmr.prepare.cli.main`."""

from slifmr.prepare.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

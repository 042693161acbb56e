"""Allow ``python -m migrate``."""

from migrate.cli.main import main

if __name__ == "__main__":
    main()

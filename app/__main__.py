"""`python -m app` is the `tooldeck` command."""

import sys


def main() -> None:
    from app.cli import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()

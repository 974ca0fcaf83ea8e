"""`python -m medserve` is the `medserve` command."""

from medserve.cli import main

main()

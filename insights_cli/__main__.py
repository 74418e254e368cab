"""`python -m insights_cli`: the same program as the `insights` console script."""

from insights_cli.commands import main

main()

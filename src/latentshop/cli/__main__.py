"""``python -m latentshop.cli`` runs the ``latentshop`` command."""

from latentshop.cli.main import main

main()

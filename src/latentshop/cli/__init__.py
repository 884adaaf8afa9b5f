"""The command line: thin wiring of the library's functions (see ``latentshop --help``)."""

__all__: list[str] = []

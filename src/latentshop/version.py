"""The version of latentshop (a leaf module: files record it without importing the package)."""

__version__ = "0.1.0"

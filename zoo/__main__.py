"""``python -m zoo`` is the ``zoo`` console script."""

from .cli import main

main()

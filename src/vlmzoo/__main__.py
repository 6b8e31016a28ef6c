"""``python -m vlmzoo``: the same as the ``vlmzoo`` command."""

from vlmzoo.cli import main

main()

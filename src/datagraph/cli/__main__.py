"""``python -m datagraph.cli``: the ``datagraph`` command."""

from . import main

main()

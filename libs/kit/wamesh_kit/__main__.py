"""``python -m wamesh_kit``: the ``wamesh`` command."""

from wamesh_kit.cli import main

main()

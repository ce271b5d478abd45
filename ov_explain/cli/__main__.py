"""``python -m ov_explain.cli``: the ``ov-explain`` command."""

from ov_explain.cli import main

main()

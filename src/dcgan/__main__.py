"""``python -m dcgan`` (also what torchrun launches with ``-m dcgan``)."""

from .cli import main

raise SystemExit(main())

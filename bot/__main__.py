"""`python -m bot` is `rollbot serve` (the Procfile's `web:` line)."""

import sys

from bot.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))

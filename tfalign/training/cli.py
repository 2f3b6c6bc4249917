"""What the trainer's and evaluator's command lines share."""
from __future__ import annotations

import argparse

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """Usage errors are one line on stderr with exit code 2, like bad data; ``--help`` still shows the usage."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")

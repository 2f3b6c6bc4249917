"""What every ``python -m tfalign.<verb>`` command line shares (no TensorFlow import: ``--help`` stays instant)."""
from __future__ import annotations

import argparse

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """Usage errors are one line on stderr with exit code 2, like bad data; ``--help`` still shows the usage.

    The line starts with the module name (``tfalign.train: error: ...``), the prefix the commands use for data
    errors too, so scripts can match one pattern.
    """

    def error(self, message):
        words = self.prog.split()  # "python -m tfalign.data inspect" → "tfalign.data"
        name = words[words.index("-m") + 1] if "-m" in words[:-1] else self.prog
        self.exit(EXIT_USAGE, f"{name}: error: {message} (see {self.prog} --help)\n")

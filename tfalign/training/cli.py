"""What the trainer's and evaluator's command lines share (kept for imports; the parser lives in tfalign.cli)."""
from tfalign.cli import EXIT_USAGE, OneLineParser  # noqa: F401

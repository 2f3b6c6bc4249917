"""The trainer's and evaluator's only door to the data code (``tfalign.data.spec`` and ``tfalign.data.pipeline``).

Everything here fails before any training starts, with the spec string and the flag it came from in the message.
"""
from __future__ import annotations

from tfalign.data.records import DataError


def load_specs(specs, flag: str = "--data", skipped=None) -> list[tuple[str, list]]:
    """Parse every dataset spec into records: [(spec, records)]. Unknown specs and empty sets raise ValueError.

    ``skipped``: a list to go on past bad records, collecting their errors; None stops at the first one.
    """
    from tfalign.data.spec import load_records
    out = []
    for spec in specs:
        try:
            records = list(load_records(spec, skip_bad=skipped is not None, report=skipped))
        except DataError as exc:
            raise ValueError(f"{flag} {spec}: {exc.reason if exc.source == spec else exc}") from None
        except (KeyError, ValueError, FileNotFoundError, OSError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise ValueError(f"{flag} {spec}: {msg}") from None
        if not records:
            raise ValueError(f"{flag} {spec}: the dataset is empty (no faces)")
        out.append((spec, records))
    return out


def check_schemes(loaded, input_spec, flag: str = "--data") -> None:
    """Every markup in the data must be one the model predicts or converts to one (the pipeline's own rule)."""
    from tfalign.data.pipeline import record_targets
    for spec, records in loaded:
        first_of_scheme = {r.scheme: r for r in reversed(records)}
        for record in first_of_scheme.values():
            try:
                record_targets(record, input_spec.schemes)
            except DataError as exc:
                raise ValueError(f"{flag} {spec}: {exc.reason} (the model predicts "
                                 f"{', '.join(input_spec.schemes)})") from None


def make_dataset(records, input_spec, *, training: bool, batch_size: int, seed: int):
    """The pipeline in deterministic order (resume and multi-worker sharding need every worker and every restart
    to see the same batches); training streams are endless, reshuffled each pass."""
    from tfalign.data.pipeline import make_dataset as _make
    return _make(records, input_spec, training=training, batch_size=batch_size, seed=seed, deterministic=True,
                 repeat=training)

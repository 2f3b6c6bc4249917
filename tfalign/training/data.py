"""The trainer's and evaluator's only door to the data code (``tfalign.data.spec`` and ``tfalign.data.pipeline``).

Everything here fails before any training starts, with the spec string and the flag it came from in the message.
"""
from __future__ import annotations

from tfalign.data.records import DataError
from tfalign.schemes import get_scheme


def load_specs(specs, flag: str = "--data") -> list[tuple[str, list]]:
    """Parse every dataset spec into records: [(spec, records)]. Unknown specs and empty sets raise ValueError."""
    from tfalign.data.spec import load_records
    out = []
    for spec in specs:
        try:
            records = list(load_records(spec))
        except DataError as exc:
            raise ValueError(f"{flag} {spec}: {exc}") from None
        except (KeyError, ValueError, FileNotFoundError, OSError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise ValueError(f"{flag} {spec}: {msg}") from None
        if not records:
            raise ValueError(f"{flag} {spec}: the dataset is empty (no faces)")
        out.append((spec, records))
    return out


def check_schemes(loaded, input_spec, flag: str = "--data") -> None:
    """Every record's markup must be one the model predicts (or convert to one, per ``tfalign.schemes``)."""
    predicted = {get_scheme(s).name for s in input_spec.schemes}
    for spec, records in loaded:
        for name in sorted({r.scheme for r in records}):
            scheme = get_scheme(name)
            if scheme.name in predicted or predicted & set(scheme.conversions):
                continue
            raise ValueError(f"{flag} {spec}: faces are annotated with scheme '{scheme.name}', which the model "
                             f"does not predict (it predicts {', '.join(sorted(predicted))}) and which converts "
                             f"to none of those")


def make_dataset(records, input_spec, *, training: bool, batch_size: int, seed: int):
    from tfalign.data.pipeline import make_dataset as _make
    return _make(records, input_spec, training=training, batch_size=batch_size, seed=seed)

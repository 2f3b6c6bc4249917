"""Load a script under bench/ as a module: the benches are scripts, not a package."""
import importlib.util
import os

_BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def load_bench(filename: str, name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(_BENCH, filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

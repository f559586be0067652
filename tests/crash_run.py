"""A run that dies like kill -9 at a chosen point: ``python tests/crash_run.py HOME
module:function before|after N`` runs the pipeline on HOME and ends the process with no
cleanup (``os._exit``) just before or after the N-th call of that function."""

from __future__ import annotations

import importlib
import io
import os
import sys

KILLED = 137


def arm(target: str, when: str, nth: int) -> None:
    module_name, name = target.split(":")
    original = getattr(importlib.import_module(module_name), name)
    calls = 0

    def dying(*args, **kwargs):
        nonlocal calls
        calls += 1
        if when == "before" and calls == nth:
            os._exit(KILLED)
        result = original(*args, **kwargs)
        if when == "after" and calls == nth:
            os._exit(KILLED)
        return result

    # Every module that imported the function by name calls it through its own reference.
    for module in list(sys.modules.values()):
        for attribute, value in list(vars(module).items()):
            if value is original:
                setattr(module, attribute, dying)


def main(home: str, target: str, when: str, nth: str) -> int:
    from pipelines.cli import run_pipeline
    from pipelines.settings import Settings

    settings = Settings.resolve(home=home)
    import pipelines.definitions  # noqa: F401  (imports every stage before arming)

    arm(target, when, int(nth))
    return 0 if run_pipeline(settings, out=io.StringIO()) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))

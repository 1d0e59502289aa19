"""Build script for the one compiled module; everything else is declared in setup.cfg.

`keras_albert.data.pretraining._instances` (C, no dependencies) builds create-pretraining-data's instances about 12
times faster than its NumPy twin. It is optional: without a C compiler the install still succeeds and the NumPy
builder, which writes byte-identical records, runs instead (`keras_albert.data.pretraining.instances.compiled_module()`
is None then, and the run's summary.json says which builder ran under settings.builder).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "keras_albert.data.pretraining._instances",
            sources=["keras_albert/data/pretraining/_instances.c"],
            optional=True,
        )
    ]
)

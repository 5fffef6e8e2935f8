"""Build the compiled modules.

KVSTORE_DEBUG=1 turns on the C-level debug switch (structure validators,
line tracing, annotate HTML); KVSTORE_ASAN=1 adds AddressSanitizer on top, for
the instrumented test run in .ci/run.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("KVSTORE_DEBUG") == "1"
ASAN = os.environ.get("KVSTORE_ASAN") == "1"

compile_args = ["-O2", "-Wall", "-Wno-unused-function", "-Wno-unreachable-code"]
link_args = []
macros = [("KVSTORE_DEBUG", "1" if (DEBUG or ASAN) else "0")]
if DEBUG:
    # The "linetrace" directive only emits the hooks; these turn them on (coverage).
    macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
if ASAN:
    compile_args = ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer",
                    "-Wall", "-Wno-unused-function"]
    link_args = ["-fsanitize=address"]


def extension(name: str) -> Extension:
    return Extension(
        f"kvstore.{name}",
        [f"kvstore/{name}.pyx"],
        include_dirs=["kvstore"],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )


MODULES = ("_codec", "_engine", "_protocol")

setup(
    ext_modules=cythonize(
        [extension(m) for m in MODULES],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
            "linetrace": DEBUG,
        },
        annotate=DEBUG,
    ),
)

"""The numeric path: which CPU code computes a number, and the portable mode that fixes it.

A matrix product's last bits depend on the order of its additions, and that order depends on
the code path: MKL (PyTorch's BLAS) and OpenBLAS (NumPy's) each pick a kernel per CPU (SSE4.2,
AVX2, AVX-512, AMX), PyTorch and NumPy each pick vectorized loops per CPU, and BLAS libraries
split sums across threads. In a MuJoCo rollout one flipped last bit grows, step by step, into
a different episode. So a return measured on one CPU is, bit for bit, not the return measured
on another, unless every one of those choices is fixed.

The **portable mode** fixes them, before the libraries first compute:

* MKL's conditional numerical reproducibility branch ``COMPATIBLE`` (``MKL_CBWR``): the same
  SSE2-level kernels on every x86_64 CPU, Intel or AMD;
* OpenBLAS's kernels for the Nehalem core (``OPENBLAS_CORETYPE``), which every CPU that runs
  this NumPy runs (NumPy 2.4 requires x86-64-v2), on one thread;
* NumPy's and PyTorch's vectorized loops at their baseline (``NPY_DISABLE_CPU_FEATURES``,
  ``ATEN_CPU_CAPABILITY=default``);
* one intra-op thread for PyTorch, so no sum is split differently on a machine with more cores;
* oneDNN off, so no operator takes its own CPU-dispatched path.

``import pruningrl`` turns it on, so every entry point (the command line, the sweep engine's
workers, notebooks, tests and a reader's own script) computes in it, and every process it
starts inherits it. It can only take effect before NumPy is imported and before MKL's first
call: a script that imports NumPy or computes with torch first gets a
:class:`PortabilityWarning`, and :func:`numeric_mode` says ``"native"``. Import pruningrl
first, or start Python with :data:`PORTABLE_ENVIRONMENT` set. Set ``PRUNINGRL_NUMERICS=native``
to keep the CPU's fastest paths (numbers then hold on that CPU path only).

What it promises: the same bits for the same seed on any x86_64 CPU, with the same library
versions (the test environment pins them) and the same glibc maths library path, which every
x86_64 CPU with AVX2 and FMA takes. On arm64, PyTorch and NumPy use other BLAS builds and
kernels entirely: numbers agree statistically, not bit for bit.
"""

from __future__ import annotations

import ctypes
import os
import platform
import warnings
from functools import lru_cache
from pathlib import Path

PORTABLE = "portable"
NATIVE = "native"
MODE_VARIABLE = "PRUNINGRL_NUMERICS"
#: What the portable mode sets in the environment, so that child processes start in it too.
PORTABLE_ENVIRONMENT = {
    "MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default", "MKL_DYNAMIC": "FALSE",
    "OMP_DYNAMIC": "FALSE", "OPENBLAS_CORETYPE": "Nehalem", "OPENBLAS_NUM_THREADS": "1",
    # NumPy's dispatch targets above its baseline (2.4 names, then those of NumPy 1.26-2.3)
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR AVX2 FMA3 AVX512F "
                                "AVX512_SKX AVX512_CLX AVX512_CNL",
}
OPENBLAS_CORE = "Nehalem"
#: MKL's codes (mkl_service.h): the branch COMPATIBLE, and a mode change refused once MKL ran.
_CBWR_ALL, _CBWR_COMPATIBLE, _CBWR_CHANGE_REFUSED = -1, 3, -8
_CBWR_NAMES = {0: "off", 1: "off", 2: "auto", 3: "compatible", 4: "sse2", 6: "ssse3",
               7: "sse4_1", 8: "sse4_2", 9: "avx", 10: "avx2", 12: "avx512", 14: "avx512_e1"}
#: CPU flags that decide a code path somewhere in the stack.
_PATH_FLAGS = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512_vnni", "avx512_bf16",
               "amx_tile", "asimd", "sve")


class PortabilityWarning(UserWarning):
    """The portable numeric mode is not in force: numbers hold on this CPU path only."""


@lru_cache(maxsize=1)
def _mkl_service() -> ctypes.CDLL | None:
    """PyTorch's MKL (linked into libtorch_cpu), or None where this build has none."""
    import torch

    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        path = Path(torch.__file__).parent / "lib" / name
        if path.exists():
            try:
                library = ctypes.CDLL(str(path))
                library.mkl_serv_cbwr_get.restype = ctypes.c_int
                library.mkl_serv_cbwr_set.restype = ctypes.c_int
                return library
            except (OSError, AttributeError):
                return None
    return None


def openblas_core() -> str | None:
    """The core whose kernels NumPy's OpenBLAS uses ("Nehalem", "Haswell", ...); None when
    NumPy's BLAS is not an OpenBLAS this can ask."""
    function = _openblas_corename()
    return None if function is None else function().decode()


@lru_cache(maxsize=1)
def _openblas_corename():
    """OpenBLAS's corename function in NumPy's bundled library, or None."""
    import numpy as np

    folder = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(folder.glob("libscipy_openblas*.so*")):
        try:
            library = ctypes.CDLL(str(path))
        except OSError:
            continue
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                     "openblas_get_corename"):
            function = getattr(library, name, None)
            if function is not None:
                function.restype = ctypes.c_char_p
                return function
    return None


def numpy_dispatch() -> list[str]:
    """NumPy's vectorized-loop targets above its baseline that are in use on this CPU."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]


def mkl_branch() -> str | None:
    """MKL's reproducibility branch now in force ("compatible", "off", ...); None without MKL."""
    library = _mkl_service()
    if library is None:
        return None
    code = library.mkl_serv_cbwr_get(ctypes.c_int(_CBWR_ALL))
    return _CBWR_NAMES.get(code, str(code))


def enable_portable_mode() -> bool:
    """Put this process (and the processes it starts) in the portable numeric mode.

    Returns True when the mode is in force. Safe to call many times. When MKL has already
    computed in this process its branch can no longer change: the call then warns with a
    :class:`PortabilityWarning` and returns False.
    """
    for name, value in PORTABLE_ENVIRONMENT.items():
        os.environ[name] = value
    import torch

    library = _mkl_service()
    refused = False
    if library is not None:
        status = library.mkl_serv_cbwr_set(ctypes.c_int(_CBWR_COMPATIBLE))
        refused = status == _CBWR_CHANGE_REFUSED and mkl_branch() != "compatible"
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    in_force = numeric_mode() == PORTABLE
    if refused or not in_force:
        warnings.warn(
            "pruningrl's portable numeric mode is not in force (NumPy was imported, or torch "
            "computed, before pruningrl): numbers may differ on another CPU. Import pruningrl "
            "first in a fresh process, or start it with the variables of "
            "pruningrl.numerics.PORTABLE_ENVIRONMENT set.", PortabilityWarning, stacklevel=3)
    return in_force


def numeric_mode() -> str:
    """``"portable"`` when every choice of the portable mode is in force, else ``"native"``."""
    import torch

    fixed = (mkl_branch() in (None, "compatible")
             and openblas_core() in (None, OPENBLAS_CORE) and not numpy_dispatch()
             and torch.backends.cpu.get_cpu_capability() == "DEFAULT"
             and torch.get_num_threads() == 1 and not torch.backends.mkldnn.enabled)
    return PORTABLE if fixed else NATIVE


@lru_cache(maxsize=1)
def _cpu() -> tuple[str, tuple[str, ...]]:
    """The CPU's model name and the code-path-relevant flags it reports."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model, tuple(flag for flag in _PATH_FLAGS if flag in flags)


@lru_cache(maxsize=1)
def _blas_builds() -> dict[str, str | None]:
    """The BLAS libraries' builds: PyTorch's (MKL's version line) and NumPy's."""
    import numpy as np
    import torch

    mkl = next((line.strip(" -") for line in torch.__config__.show().splitlines()
                if "Math Kernel Library" in line), None)
    try:
        numpy_blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        numpy_build = f"{numpy_blas.get('name')} {numpy_blas.get('version')}"
    except (TypeError, KeyError):
        numpy_build = None
    return {"torch": mkl, "numpy": numpy_build}


def numeric_path() -> dict:
    """The numeric path of this process, for provenance: the CPU, its instruction sets, the
    BLAS builds, PyTorch's kernel capability, MKL's branch, the thread count and the mode."""
    import torch

    model, flags = _cpu()
    return {"mode": numeric_mode(), "cpu": model, "machine": platform.machine(),
            "instruction_sets": list(flags), "blas": _blas_builds(),
            "mkl_branch": mkl_branch(), "openblas_core": openblas_core(),
            "numpy_dispatch": numpy_dispatch(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads()}


#: What records made before the numeric path was recorded say of it.
UNRECORDED = {"mode": "unrecorded, single host"}


def same_path(recorded: dict | None, current: dict | None = None) -> bool:
    """Whether a number recorded on ``recorded``'s numeric path can be reproduced exactly here:
    both portable, or both native on the same CPU, instruction sets and BLAS build."""
    current = current if current is not None else numeric_path()
    if not recorded or recorded.get("mode") not in (PORTABLE, NATIVE):
        return False
    if recorded["mode"] == PORTABLE and current["mode"] == PORTABLE:
        return recorded.get("machine") == current.get("machine")
    keys = ("mode", "cpu", "instruction_sets", "blas", "mkl_branch", "openblas_core",
            "numpy_dispatch", "torch_cpu_capability", "threads")
    return all(recorded.get(key) == current.get(key) for key in keys)


def worker_environment() -> dict[str, str]:
    """The environment variables that start a worker process in this process's numeric mode."""
    if numeric_mode() == PORTABLE:
        return {**PORTABLE_ENVIRONMENT, MODE_VARIABLE: PORTABLE}
    return {MODE_VARIABLE: NATIVE}


def apply_on_import() -> None:
    """What ``import pruningrl`` does: the portable mode, unless ``PRUNINGRL_NUMERICS=native``."""
    wanted = os.environ.get(MODE_VARIABLE, PORTABLE).strip().lower()
    if wanted not in (PORTABLE, NATIVE):  # a typo must not break every import: say so, go on
        warnings.warn(f"{MODE_VARIABLE} must be 'portable' or 'native', got {wanted!r}; "
                      "using the portable numeric mode", PortabilityWarning, stacklevel=3)
        wanted = PORTABLE
    if wanted == PORTABLE:
        enable_portable_mode()


def shell_exports() -> str:
    """``export NAME=VALUE`` lines that start a shell's Python processes in the portable mode."""
    import shlex

    return "\n".join(f"export {name}={shlex.quote(value)}"
                     for name, value in PORTABLE_ENVIRONMENT.items())


if __name__ == "__main__":  # python -m pruningrl.numerics: the exports, for eval in a shell
    print(shell_exports())

"""Process settings of the command line and of cohort workers."""

import subprocess
import sys

import pytest

# bytearray: a plain malloc'd, zero-filled block (numpy may ask for huge pages, which hides
# the page count, not the zeroing)
ALLOCATE = """
import resource, sys
from qsmiron.pipeline.runners import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else None
def iteration():  # as an FFT or a solver step: blocks the size of a 1 mm head's padded grid
    blocks = [bytearray(28_000_000) for _ in range(3)]
    return sum(len(block) for block in blocks)  # then all freed
iteration()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    iteration()
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_grid_sized_arrays_are_reused_instead_of_paged_in_again():
    def faults(mode):
        out = subprocess.run([sys.executable, "-c", ALLOCATE, mode], capture_output=True, text=True, check=True)
        took, count = out.stdout.split()
        return took, int(count)

    took, kept = faults("keep")
    if took != "True":
        pytest.skip("the C library is not glibc")
    _, default = faults("default")
    # 60 blocks of 28 MB are about 410 000 pages of 4 kB when each is mapped anew
    assert default > 100_000 and kept < 0.01 * default


# numba re-reads NUMBA_NUM_THREADS whenever it compiles; a value other than the one its threads
# started with then fails the compilation. Each case runs in a fresh interpreter (numba's state
# is per process), with NUMBA_NUM_THREADS unset and a parallel kernel that launches the threads.
THREADS_THEN_COMPILE = """
import os, sys
os.environ.pop("NUMBA_NUM_THREADS", None)
from qsmiron.pipeline.runners import _with_threads, limit_threads

def launch_threads():
    import numba, numpy as np

    @numba.njit(parallel=True)
    def total(a):
        s = 0.0
        for i in numba.prange(a.size):
            s += a[i]
        return s
    return total(np.ones(1000))

def compile_new_kernel():
    import numba, numpy as np
    return numba.njit(lambda a: a.sum() + 1.0)(np.ones(4))

if sys.argv[1] == "imported before":
    launch_threads()
    _with_threads(1, compile_new_kernel)
    compile_new_kernel()
elif sys.argv[1] == "imported inside":
    _with_threads(1, launch_threads)
    compile_new_kernel()
else:  # a worker: capped once, then compiling as it goes
    launch_threads()
    limit_threads(1)
    compile_new_kernel()
print("compiled")
"""


@pytest.mark.parametrize("case", ["imported before", "imported inside", "worker"])
def test_capping_threads_never_makes_a_later_numba_compilation_fail(case):
    out = subprocess.run([sys.executable, "-c", THREADS_THEN_COMPILE, case], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() == "compiled"

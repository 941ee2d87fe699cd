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

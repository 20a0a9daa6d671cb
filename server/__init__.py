"""The live explanation server: raster, explanation engine, protocol, sessions, app.

One BLAS and OpenMP thread per process, set before numpy, scipy or torch load
their libraries (which read these variables once): OpenBLAS and libgomp
otherwise start a pool of one thread per core, created by the importing
thread at niceness 0, and spin on it.  LIME and KernelSHAP (scikit-learn's
solvers) then ran ~20 % of their CPU time on such a pool thread, outside the
slow lane's niceness, beside the live frames (issue 29.1).  An operator's own
setting wins.
"""

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

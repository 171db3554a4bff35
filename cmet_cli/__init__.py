"""The `cmet` command.

Before anything imports torch: OpenMP threads that wait for work sleep instead of spinning
(`OMP_WAIT_POLICY`, read once when torch's OpenMP runtime loads). A spinning thread burns a core
the other threads of the edit, or a neighbour, need: on a busy 2-core machine `cmet edit` of a 7 s
clip took 132 s of wall and 33 s of CPU with spinning threads, 37 s and 7 s without. The process's
thread counts are `CMET_NUM_THREADS` (`cmet_core/threads.py`); the workers `cmet serve` and `cmet
worker` start inherit this.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

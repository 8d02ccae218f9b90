"""``python -m zoo.benchmark JOB.json``: one job of a sweep, in a child process."""

import sys

from .child import run_job_file

sys.exit(run_job_file(sys.argv[1]))

"""``python -m zoo.benchmark JOB.json``: one job of a sweep, in a child process;
``python -m zoo.benchmark --study FILE``: the study of one model of ``zoo bench --tune``."""

import sys

if sys.argv[1] == "--study":
    from .studies import run_study_file

    sys.exit(run_study_file(sys.argv[2]))

from .child import run_job_file

sys.exit(run_job_file(sys.argv[1]))

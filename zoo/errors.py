"""The zoo's own errors. The CLI prints each as one line: usage errors exit 2, failures exit 1."""


class ZooError(Exception):
    """Something failed (exit code 1): a broken file, a failed export, a numerical blow-up."""


class ZooUsageError(ZooError):
    """The user asked for something that cannot be (exit code 2): a bad option, a missing split."""

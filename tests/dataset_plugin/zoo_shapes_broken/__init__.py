"""A dataset plugin whose module fails when it is imported (and leaves a trace if it is)."""

import os

if os.environ.get("ZOO_TEST_IMPORT_MARKER"):
    with open(os.environ["ZOO_TEST_IMPORT_MARKER"], "w") as marker:
        marker.write("imported")
raise RuntimeError("this plugin's data server is unreachable")


class Shapes:
    """Never defined: the module fails before."""

"""Training a run: runner (execute a plan) > resume > loop (fit) > callbacks."""

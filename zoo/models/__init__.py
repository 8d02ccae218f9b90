"""Built-in builders, one per file. They are registered in setup.cfg like any third-party plugin."""

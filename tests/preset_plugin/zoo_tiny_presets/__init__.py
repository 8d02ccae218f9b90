# The zoo reads a preset package's files and never imports it: this import failing would show.
raise ImportError("zoo_tiny_presets holds presets as package data; nothing should import it")

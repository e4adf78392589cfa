"""The core: errors, registries, random streams, atomic writes, config ranges, statistics and the run
directory's names and lock. It imports nothing else of `nas`."""

"""What every layer shares: input validators (checks), seeding, threads and devices (runtime),
atomic writes, config hashes and checkpoint loading (storage), and where figures, runs and the
cache go (paths). It imports nothing else of the package."""

"""The Lightning layer: `GenerationMonitor` schedules rounds, guards the training state, and hands samples to the
loggers. Everything it decodes goes through `lightning_gen.decoding`."""

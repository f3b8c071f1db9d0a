"""Benchmarks behind `minibnn bench ...`: each module exposes add_arguments(parser) and run(args)."""

"""The development upstream: an offline OpenAI-compatible server for `make run`, tests and benchmarks."""

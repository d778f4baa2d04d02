"""Benchmarks on real memory datasets (loaders, metrics). Data is read from ../shared/data; never shipped."""

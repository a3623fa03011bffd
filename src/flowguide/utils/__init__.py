"""Shared modules every stage may import: video I/O, HDF5 access, atomic writes, failures."""

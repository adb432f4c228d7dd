"""Test support: real Azurite and a real devhost process, shared by tests and benchmarks."""

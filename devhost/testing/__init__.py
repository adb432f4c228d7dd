"""devhost's test harness: a private Azurite and devhost processes, for the tests and the benchmarks."""

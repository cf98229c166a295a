"""Data: click sequences with a leave-one-out split, the simulated world, real logs (fetched, parsed and
verified), impression logs."""

"""Data: click sequences with a leave-one-out split, the simulated world, real datasets, impression logs."""

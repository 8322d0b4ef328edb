"""The stream's processes: the Faust app of each role set, leases, and the worker entry."""

"""The sans-I/O core of vrrpkit: no sockets, no clock reads, no threads.

Every input carries ``now`` (float seconds from the caller's clock); every output is a value.
"""

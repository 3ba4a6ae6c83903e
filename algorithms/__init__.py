"""Built-in synchronization strategies, one file each.

Every module here registers itself on import (the registry imports them all),
so adding a strategy means adding one file. See CONTRIBUTING.md for the contract.
"""

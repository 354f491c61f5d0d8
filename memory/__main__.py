"""`python -m memory ...`: the same as the `memctl` command (what client configs launch)."""

from memory.launch import main

main()

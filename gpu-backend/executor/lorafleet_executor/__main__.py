"""`python -m lorafleet_executor --socket PATH`: the same as lorafleet_executor.server."""

from .server import main

main()

"""`python -m lorafleet_executor --socket PATH [flags]`: the executor process, as the
engine's client starts it (runtime/server.py; `--help` lists the flags)."""

from .runtime.server import main

main()

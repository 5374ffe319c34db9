"""The engine <-> executor wire format (PROTOCOL.md): frames, the message table, the
codec and the message records. numpy only (no torch): the protocol server answers its
first frame before torch is imported."""

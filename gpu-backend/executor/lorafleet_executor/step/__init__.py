"""One step of a plan on the executor's side: the plan checked against the limits, the
per-sequence state it advances, its host inputs, and the launched step whose samples
come back later. Reads protocol records; builds on model/."""

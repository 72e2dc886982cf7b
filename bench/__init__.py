"""`make bench`: the stack's speed, memory and size measured against the usual alternatives."""

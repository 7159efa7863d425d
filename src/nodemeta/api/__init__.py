"""nodemeta's wire contracts: the protos, their generated code and the helpers that pre-encode events."""

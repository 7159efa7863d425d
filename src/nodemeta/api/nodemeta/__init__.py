"""nodemeta's own versioned protos."""

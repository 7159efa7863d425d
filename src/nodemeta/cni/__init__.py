"""CNI chain guard: the node's CNI configuration and its pods' traffic capture."""

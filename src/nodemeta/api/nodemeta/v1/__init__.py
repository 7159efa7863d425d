"""`nodemeta.v1.NodeMetadata/Watch`: batched, resumable metadata stream; the *_pb2* modules are generated."""

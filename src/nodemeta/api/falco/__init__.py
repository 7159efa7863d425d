"""The Falco k8s-metacollector contract (`metadata.Metadata/Watch`); the *_pb2* modules are generated."""

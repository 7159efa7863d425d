"""The collector: one watch of the Kubernetes API, and for each subscribed node exactly the metadata it needs.

Its pure core, testable without an event loop:

* `model`: the facts about objects the core consumes (records built by the informer layer's adapters);
* `render`: byte-exact payloads (`meta`, pod `status` and `refs`) as the Falco contract carries them;
* `relations`: the relation index, which turns each API change into per-node Create/Update/Delete deltas.
"""

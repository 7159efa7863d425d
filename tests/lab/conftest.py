"""The lab's fixtures (`lab`, `clean_lab`, `lab_factory`) come from the `tests.lab.plugin` pytest plugin, which
tests/conftest.py registers for the whole suite; see that module."""

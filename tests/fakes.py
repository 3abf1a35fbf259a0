"""The fake model backend lives in the package (``engine.model.fake_backend``): the bench uses
it too. Re-exported here for the tests."""

from engine.model.fake_backend import FakeBackend

__all__ = ["FakeBackend"]

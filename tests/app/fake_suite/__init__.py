"""A task package with the optional hooks `zeke init` calls: ``db.upgrade(url)`` and
``schedules.register(manager)``. They record their calls in the file named by ZEKE_FAKE_SUITE_LOG."""

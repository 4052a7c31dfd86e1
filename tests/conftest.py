"""Test-suite wiring. Fixtures live in ``tests/support/``, one module per area."""

pytest_plugins = [
    "support.emulator_fixtures",
    "support.entra_fixtures",
    "support.arm_fixtures",
    "support.files_fixtures",
    "support.postgres_fixtures",
    "support.spark_fixtures",
    "support.aml_hub",
]

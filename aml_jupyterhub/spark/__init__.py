"""Spark kernels on a compute instance: sparkmagic preconfigured for Apache Livy or Microsoft Fabric.

- :func:`parse_spark_settings` validates the admin's settings (per profile or global);
- :func:`sparkmagic_config` builds sparkmagic's ``config.json`` from them and
  :func:`write_sparkmagic_config` writes it (on every start of the instance);
- :func:`install_kernelspecs` installs the PySpark and Spark kernels;
- the sparkmagic plug-in (:mod:`.fabric_auth`, :mod:`.livy_auth`, :mod:`.livy_http`)
  runs inside the kernels. See docs/spark.md.
"""

from .config import sparkmagic_config, write_sparkmagic_config
from .kernels import install_kernelspecs
from .settings import SparkConfigError, SparkSettings, parse_spark_settings

__all__ = [
    "SparkConfigError",
    "SparkSettings",
    "install_kernelspecs",
    "parse_spark_settings",
    "sparkmagic_config",
    "write_sparkmagic_config",
]

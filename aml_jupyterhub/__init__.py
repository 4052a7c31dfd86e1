"""JupyterHub on Azure Machine Learning compute instances, as the signed-in user."""

__version__ = "0.1.0.dev0"

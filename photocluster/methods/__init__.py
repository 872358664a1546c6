"""Clustering methods: one module per method, all following :mod:`photocluster.methods.base`."""

from photocluster.methods.base import ClusteringMethod, ParamSpec, get_method, list_methods, method_class, register

__all__ = ["ClusteringMethod", "ParamSpec", "get_method", "list_methods", "method_class", "register"]

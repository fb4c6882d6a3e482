"""Hail Batch compatibility: the stock `hailtop.batch` client runs pipelines against Corral unchanged.

`corral server --hail-compat-dir DIR` serves HTTPS with a private CA, writes DIR/deploy-config.json,
DIR/tokens.json and DIR/ca.pem, and answers Hail's /api/v1alpha routes over the same store and driver.
"""

"""Built-in service and client types of benchmark sessions."""

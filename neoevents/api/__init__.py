"""Server API: the executor and its HTTP binding."""

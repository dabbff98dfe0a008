"""Redis job queue, results, dispatcher, HTTP API and the embedded Redis."""

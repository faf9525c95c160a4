"""Export part files, documents and the exports location."""

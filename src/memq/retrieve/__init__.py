"""Retrieval: candidate signals, fusion, recency, MMR diversity and the filter language."""

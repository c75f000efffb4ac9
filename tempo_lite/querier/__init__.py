"""The querier: answers trace-by-ID and search jobs from the live-store and from blocks."""

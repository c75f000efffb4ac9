"""The query frontend: validates HTTP parameters and splits queries into jobs for the querier."""

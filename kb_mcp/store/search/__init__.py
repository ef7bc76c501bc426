"""semantic_search: the three modes (`searcher`), the FT.SEARCH commands (`commands`), how hybrid ranks (`fusion`),
the keyword side's stems (`terms`) and user text made safe for query syntax (`querytext`)."""

"""`kb-mcp bench`: the benchmark driver (`runner`) and its seeded corpus (`corpus`). Imported only by `kb-mcp
bench` and the tests, never when `kb-mcp serve` starts."""

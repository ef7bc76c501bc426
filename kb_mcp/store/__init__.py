"""The knowledge store: `KnowledgeStore` (one namespace) and `Backend` (what a process shares), composed of rooms:

    schema     key layout, hash fields, the index definition (once)
    context    what the parts share: settings, manager, embedding, bounded primitives
    index      create/check the RediSearch index
    writes     the put script, pipelined writes, durability
    ingest     store_fact (upsert, dedup) and the bulk path
    search     get by id, keyword listing with cursors, vector search
    documents  chunked documents
    transfer   JSONL export / import
    admin      stats, drift, rebuild, drop
    filters    metadata filter fields (KB_FILTER_FIELDS) and `where` clauses
    deletion   delete_facts: scoped deletes in bounded batches
"""

from kb_mcp.store.admin import StoreStats
from kb_mcp.store.deletion import DeleteReport
from kb_mcp.store.knowledge import Backend, KnowledgeStore

__all__ = ["Backend", "DeleteReport", "KnowledgeStore", "StoreStats"]

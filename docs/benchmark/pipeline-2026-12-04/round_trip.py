import asyncio, os, time
from mcp import Client, StdioServerParameters
from kb_mcp.bench.support import kb_mcp_command
async def main():
    env = {**os.environ, "KB_REDIS_URL": "redis://127.0.0.1:6400/0", "KB_NAMESPACE": "pipeab", "KB_LOG_LEVEL": "WARNING", "KB_QUERY_CACHE_SIZE": "100000"}
    async with Client(StdioServerParameters(command=kb_mcp_command(), args=["serve"], env=env)) as c:
        r = await c.call_tool("store_fact", {"content": "round trip probe fact"})
        fid = r.structured_content["fact_id"]
        qs = ["who leads the platform team", "what does alice work on"]
        for q in qs: await c.call_tool("semantic_search", {"query": q})
        for name, args in [("get_fact", {"fact_id": fid}), ("search cached hybrid", {"query": qs[0]}), ("search cached vector", {"query": qs[0], "mode": "vector"})] * 2:
            tool = "get_fact" if name == "get_fact" else "semantic_search"
            ts = []
            for _ in range(300):
                await asyncio.sleep(0.002)
                t = time.perf_counter(); await c.call_tool(tool, args); ts.append(time.perf_counter() - t)
            ts.sort(); print(f"{name}: p50 {1e3*ts[150]:.3f} p95 {1e3*ts[285]:.3f}")
asyncio.run(main())

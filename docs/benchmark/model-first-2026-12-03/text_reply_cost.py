"""Redis's own time (INFO commandstats) for the hybrid full-text query, 50 hits, by what it returns; same setup as
interleaved.py."""
import redis, time
from kb_mcp.store.schema import F_VECTOR, F_STEMS
from kb_mcp.bench.corpus import generate
from kb_mcp.store.search.commands import text_command
from kb_mcp.store.search.terms import query_stems
r = redis.Redis(port=6400)
qs = [it.query for it in generate(2000, seed=7)[:300]]
idx = "{peerkb}:idx"
def stats():
    s = r.info("commandstats")["cmdstat_FT.SEARCH"]; return s["calls"], s["usec"]
def run(label, mk):
    cmds = [mk(q) for q in qs]
    for c in cmds[:20]: r.execute_command(*c)
    c0, u0 = stats(); w = time.perf_counter(); size = 0
    for c in cmds:
        raw = r.execute_command(*c)
    c1, u1 = stats()
    print(f"{label:28s} redis {(u1-u0)/(c1-c0):6.0f} us/call  client wall {1e6*(time.perf_counter()-w)/len(cmds):6.0f} us")
base = lambda q: text_command(idx, query_stems(q), 50, [], held=True)
run("whole+vector+stems (now)", base)
def fields(q, f):
    c = base(q); i = c.index("RETURN"); n = c[i+1]; return c[:i] + ["RETURN", len(f), *f] + c[i+2+n:]
run("vector+stems (before 09ae251)", lambda q: fields(q, [F_VECTOR, F_STEMS]))
run("stems only", lambda q: fields(q, [F_STEMS]))
run("NOCONTENT", lambda q: [x for x in base(q)[:base(q).index("RETURN")]] + ["NOCONTENT"] + base(q)[base(q).index("RETURN")+2+base(q)[base(q).index("RETURN")+1]:])
print(base(qs[0])[:8])

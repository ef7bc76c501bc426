import random, numpy as np
from kb_mcp.bench.corpus import generate
from kb_mcp.embeddings.onnx import OnnxMiniLMEmbedding
from kb_mcp.embeddings.base import MINILM_DIM
items = generate(1_000_000, seed=7)
rng = random.Random(7)
sample = rng.sample(range(100000), 200)
queries = [items[i].query for i in sample]
emb = OnnxMiniLMEmbedding(threads=1)
qv = emb.embed(queries)
v = np.memmap(str(__import__("pathlib").Path.home()) + "/.cache/kb-mcp/bench/synthetic-seed7-1000000-all-MiniLM-L6-v2-onnx-int8.f32", dtype=np.float32, mode="r", shape=(1_000_000, MINILM_DIM))
for n in (100_000, 1_000_000):
    s = qv @ np.asarray(v[:n]).T
    top = -np.sort(-s, axis=1)[:, :200]
    tenth = top[:, 9]
    for eps in (1e-3, 5e-3, 1e-2):
        within = (s >= (tenth - eps)[:, None]).sum(1)
        print(n, "eps", eps, "rows within eps of the 10th: median", int(np.median(within)), "p90", int(np.percentile(within, 90)))
    print(n, "gap 10th-11th median", float(np.median(top[:,9]-top[:,10])), "gap 1st-10th median", float(np.median(top[:,0]-top[:,9])))
    pass

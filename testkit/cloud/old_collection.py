"""The old scripts' DashVector collection, written the way they wrote it: the official SDK (HTTP protocol), one
doc per settled upstream row, its id the row's id, its vector the DashScope embedding, the image URL a field.

`python -m testkit.cloud.old_collection ENDPOINT API_KEY COLLECTION DIMENSION DOCS.json` (DOCS: {id: [floats]}).
A process of its own: the SDK starts its own event loop thread and hangs inside a running one (cloud-apis.md B6).
"""

from __future__ import annotations

import json
import sys

import dashvector
from dashvector import DashVectorProtocol, Doc


def main() -> None:
    endpoint, api_key, name, dimension, docs_file = sys.argv[1:6]
    client = dashvector.Client(api_key=api_key, endpoint=endpoint, protocol=DashVectorProtocol.HTTP, timeout=10)
    created = client.create(
        name, dimension=int(dimension), metric="cosine", fields_schema={"image_url": str}, timeout=-1
    )
    if created.code != 0:
        raise SystemExit(f"create: {created.code} {created.message}")
    collection = client.get(name)
    with open(docs_file) as handle:
        docs = json.load(handle)
    batch = [
        Doc(id=str(doc_id), vector=vector, fields={"image_url": f"{doc_id}.jpg"}) for doc_id, vector in docs.items()
    ]
    for start in range(0, len(batch), 100):
        inserted = collection.insert(batch[start : start + 100])
        if inserted.code != 0:
            raise SystemExit(f"insert: {inserted.code} {inserted.message}")
    print(json.dumps({"inserted": len(batch)}))


if __name__ == "__main__":
    main()
